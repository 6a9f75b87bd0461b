//! jitr-lifecycle: the Lambda function that keeps IoT Core in step with the device-management
//! side. Mender webhooks arrive through a Function URL; any other system sends a neutral
//! command by direct invoke, EventBridge or SQS.
//!
//! The key decisions: a webhook is authenticated (constant-time HMAC over the raw body) before
//! a single byte of it is parsed; every decision is recorded in the device ledger before it is
//! applied, and only if it is newer than the last one (a late or replayed event is `Stale`), so
//! registration honours it even for a device that does not exist yet; every transition is
//! idempotent so duplicates and retries are harmless; and a decommission works from the
//! certificate ids it recorded first, so a retry completes an interrupted teardown.

pub mod config;
mod handler;
pub mod secret;
pub mod transitions;

use jitr_domain::ledger::Ledger;
use jitr_domain::registry::Registry;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

pub use config::LifecycleConfig;
pub use handler::{handle_payload, http};
pub use jitr_domain::command::{Action, DeviceCommand};
pub use transitions::{CertificateChange, Lifecycle, Summary, state_after};

/// The Lambda entry point.
pub async fn handle_lambda_event<R: Registry, L: Ledger>(
    lifecycle: &Lifecycle<R, L>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let span = jitr_aws::telemetry::invocation_span(
        &event.context.request_id,
        event.context.xray_trace_id.as_deref(),
    );
    tracing::Instrument::instrument(handle_payload(lifecycle, &event.payload, now), span)
        .await
        .map_err(|err| Diagnostic {
            error_type: err.error_type(),
            error_message: err.to_string(),
        })
}
