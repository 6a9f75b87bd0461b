//! The lifecycle Lambda: wiring only (see the library for the handler).

// The nested async transitions exceed the default type-layout depth; compile-time only.
#![recursion_limit = "256"]

use jitr_core::ledger::DynamoLedger;
use jitr_core::registry::IotRegistry;
use jitr_core::registry::iot::load_sdk_config;
use jitr_lifecycle::{Lifecycle, LifecycleConfig, handle_lambda_event};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    jitr_core::telemetry::init_logging();
    let config = LifecycleConfig::from_env()?;
    let sdk = load_sdk_config().await;
    let ledger = (config.device_ledger.as_ref()).map(|s| DynamoLedger::from_settings(&sdk, s));
    let lifecycle = Lifecycle::new(IotRegistry::from_sdk_config(&sdk), config).with_ledger(ledger);
    let lifecycle = &lifecycle;
    run(service_fn(move |event: LambdaEvent<Value>| {
        handle_lambda_event(lifecycle, event)
    }))
    .await
}
