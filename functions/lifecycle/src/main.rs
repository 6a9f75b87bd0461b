//! The lifecycle Lambda: wiring only (see the library for the handler).

// The nested async transitions exceed the default type-layout depth; compile-time only.
#![recursion_limit = "256"]

use jitr_core::ledger::DynamoLedger;
use jitr_core::registry::IotRegistry;
use jitr_core::registry::iot::load_sdk_config;
use jitr_lifecycle::secret::{SecretTimings, WebhookSecrets, secrets_manager};
use jitr_lifecycle::{Lifecycle, LifecycleConfig, handle_lambda_event};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    jitr_core::telemetry::init_logging();
    let config = LifecycleConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let ledger = (config.device_ledger.as_ref()).map(|s| DynamoLedger::from_settings(&sdk, s));
    let secret_arn = config.webhook_secret_arn.clone();
    let mut lifecycle =
        Lifecycle::new(IotRegistry::from_sdk_config(&sdk), config).with_ledger(ledger);
    if let Some(arn) = secret_arn {
        let reader = secrets_manager(aws_sdk_secretsmanager::Client::new(&sdk), arn);
        let secrets = WebhookSecrets::read_through(reader, SecretTimings::default()).await?;
        lifecycle = lifecycle.with_webhook_secrets(secrets);
    }
    let lifecycle = &lifecycle;
    run(service_fn(move |event: LambdaEvent<Value>| {
        handle_lambda_event(lifecycle, event)
    }))
    .await
}
