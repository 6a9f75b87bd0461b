//! The registration Lambda: wiring only (see the library for the handler).

// The instrumented handler future exceeds the default type-layout depth; compile-time only.
#![recursion_limit = "256"]

use std::process::ExitCode;

use jitr_aws::cold_start::{exit_code, fail, require_region};
use jitr_aws::iot::load_sdk_config;
use jitr_aws::{DynamoLedger, IotRegistry, SourceFetcher};
use jitr_registration::{Registrar, handle_lambda_event};
use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    jitr_aws::telemetry::init_logging();
    let config = match jitr_aws::environment::config() {
        Ok(config) => config,
        Err(err) => return fail(&err).await,
    };
    let sdk = load_sdk_config().await;
    if let Err(err) = require_region(&sdk) {
        return fail(&err).await;
    }
    let fetcher = SourceFetcher::from_sdk_config(&sdk, config.address_policy());
    let ledger = (config.device_ledger.as_ref()).map(|s| DynamoLedger::from_settings(&sdk, s));
    let registrar =
        Registrar::new(IotRegistry::from_sdk_config(&sdk), config, fetcher).with_ledger(ledger);
    let registrar = &registrar;
    let served = run(service_fn(move |event: LambdaEvent<Value>| {
        handle_lambda_event(registrar, event)
    }))
    .await;
    exit_code(served)
}
