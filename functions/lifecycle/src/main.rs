//! The lifecycle Lambda: wiring only (see the library for the handler).

// The nested async transitions exceed the default type-layout depth; compile-time only.
#![recursion_limit = "256"]

use std::process::ExitCode;

use jitr_aws::DynamoLedger;
use jitr_aws::IotRegistry;
use jitr_aws::cold_start::{exit_code, fail, fail_with, require_region};
use jitr_aws::iot::load_sdk_config;
use jitr_lifecycle::secret::{SecretTimings, WebhookSecrets, secrets_manager};
use jitr_lifecycle::{Lifecycle, LifecycleConfig, handle_lambda_event};
use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    jitr_aws::telemetry::init_logging();
    let config = match LifecycleConfig::from_env() {
        Ok(config) => config,
        Err(err) => return fail(&err).await,
    };
    let sdk = load_sdk_config().await;
    if let Err(err) = require_region(&sdk) {
        return fail(&err).await;
    }
    let ledger = (config.device_ledger.as_ref()).map(|s| DynamoLedger::from_settings(&sdk, s));
    let secret_arn = config.webhook_secret_arn.clone();
    let mut lifecycle =
        Lifecycle::new(IotRegistry::from_sdk_config(&sdk), config).with_ledger(ledger);
    if let Some(arn) = secret_arn {
        let reader = secrets_manager(aws_sdk_secretsmanager::Client::new(&sdk), arn);
        match WebhookSecrets::read_through(reader, SecretTimings::default()).await {
            Ok(secrets) => lifecycle = lifecycle.with_webhook_secrets(secrets),
            Err(message) => return fail_with("Init.WebhookSecretUnreadable", &message).await,
        }
    }
    let lifecycle = &lifecycle;
    let served = run(service_fn(move |event: LambdaEvent<Value>| {
        handle_lambda_event(lifecycle, event)
    }))
    .await;
    exit_code(served)
}
