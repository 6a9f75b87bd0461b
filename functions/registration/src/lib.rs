//! jitr-registration: the Lambda function behind the IoT rule on
//! `$aws/events/certificates/registered/+`.
//!
//! The key decision is the order of effects: nothing is written until the event, the
//! certificate, its CA and the revocation list have all been checked, and the certificate is
//! activated strictly last, after its Thing and policy are attached. A failure at any step
//! leaves it PENDING_ACTIVATION, so Lambda's retry (or the device's next connect) completes
//! the work; duplicates are normal and every step is idempotent. The same function runs the
//! revocation sync (a schedule or an S3 notification: CRL serials listed after admission are
//! revoked), and `explain` answers "why can't this device connect?" with the same code, reading
//! only.

mod explain;
mod provision;
mod registrar;
mod report;
mod revocation_sync;

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use jitr_aws::telemetry;
use jitr_domain::event::function_account;
use jitr_domain::ledger::Ledger;
use jitr_domain::registry::Registry;
use jitr_domain::source::Fetcher;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};

pub use explain::{CertificateFacts, Explanation, Target, ThingFacts};
pub use provision::{Provisioned, judge_binding, provision};
pub use registrar::{
    Assessment, CA_CACHE_TTL_SECS, DISTRIBUTION_POINT_WINDOW_SECS,
    MAX_DISTRIBUTION_POINTS_PER_WINDOW, Registrar, unix_now,
};
pub use report::{Outcome, Report};
pub use revocation_sync::{SyncBudget, SyncReport, WALK_ABOVE_LISTED};

/// Time kept back from the invocation's deadline when a revocation sync stops early.
const SYNC_DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// The Lambda entry point. The payload is the IoT event (rule → Lambda) or, behind the burst
/// buffer, an SQS batch of them (rule → SQS → Lambda), answered with `batchItemFailures` so only
/// failed messages come back (and, past the queue's maxReceiveCount, reach its dead-letter
/// queue). Each event gets one JSON log line and one metric line; a direct event's classified
/// error becomes `error_type = "<Class>.<Kind>"`. A scheduled event or an S3 notification (a CRL
/// object changed) runs the revocation sync instead.
pub async fn handle_lambda_event<R: Registry, F: Fetcher, L: Ledger>(
    registrar: &Registrar<R, F, L>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let span = telemetry::invocation_span(
        &event.context.request_id,
        event.context.xray_trace_id.as_deref(),
    );
    tracing::Instrument::instrument(handle_invocation(registrar, event), span).await
}

async fn handle_invocation<R: Registry, F: Fetcher, L: Ledger>(
    registrar: &Registrar<R, F, L>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    if is_sync_trigger(&payload) {
        // The profiles object changed: announce it, so every container drops its copy within
        // a second, before the sync (which reads the profiles too) runs.
        let announced = registrar
            .announce_changed_objects(&s3_objects(&payload))
            .await
            .map_err(|err| Diagnostic {
                error_type: err.error_type(),
                error_message: err.to_string(),
            })?;
        // The invocation's deadline is milliseconds since the epoch.
        let deadline = std::time::UNIX_EPOCH + Duration::from_millis(context.deadline);
        let left = deadline
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(SYNC_DEADLINE_MARGIN);
        let budget = SyncBudget {
            rate_per_second: registrar.config().revocation_sync_rate,
            deadline: tokio::time::Instant::now() + left,
        };
        return registrar
            .sync_revocations(unix_now(), budget)
            .await
            .map(|reports| match announced {
                Some(generation) => {
                    json!({"profilesGeneration": generation, "revocationSync": reports})
                }
                None => json!({"revocationSync": reports}),
            })
            .map_err(|err| Diagnostic {
                error_type: err.error_type(),
                error_message: err.to_string(),
            });
    }
    let account = function_account(
        &context.invoked_function_arn,
        registrar.config().expected_account_id.as_deref(),
    );
    // An SQS batch (the burst buffer; S3 notifications, also "Records", were taken above): only
    // the messages that failed are reported, so only they are retried.
    if payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(payload).map_err(|e| Diagnostic {
            error_type: "Permanent.MalformedEvent".into(),
            error_message: format!("not an SQS batch: {e}"),
        })?;
        let mut response = SqsBatchResponse::default();
        for message in batch.records {
            // A body that is not JSON is handled as null: a classified MalformedEvent, logged.
            let body = message
                .body
                .as_deref()
                .and_then(|body| serde_json::from_str::<Value>(body).ok())
                .unwrap_or(Value::Null);
            if handle_one(registrar, &body, &account).await.is_err() {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        return Ok(json!(response));
    }
    handle_one(registrar, &payload, &account)
        .await
        .map(|report| json!(report))
        .map_err(|err| Diagnostic {
            error_type: err.error_type(),
            error_message: err.to_string(),
        })
}

/// The (bucket, key) of every object an S3 notification names (keys URL-decoded as S3 encodes
/// them: `+` for a space, `%XX` escapes).
fn s3_objects(payload: &Value) -> Vec<(String, String)> {
    let records = payload.get("Records").and_then(Value::as_array);
    records
        .into_iter()
        .flatten()
        .filter_map(|record| {
            let s3 = record.get("s3")?;
            let bucket = s3.get("bucket")?.get("name")?.as_str()?;
            let key = s3.get("object")?.get("key")?.as_str()?;
            Some((bucket.to_owned(), url_decoded(key)?))
        })
        .collect()
}

/// `+` → space and `%XX` → its byte; `None` for a malformed escape or a key not UTF-8.
fn url_decoded(key: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(key.len());
    let mut rest = key.bytes();
    while let Some(b) = rest.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [rest.next()?, rest.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// An EventBridge schedule, or S3 telling that an object (a CRL) changed.
fn is_sync_trigger(payload: &Value) -> bool {
    let scheduled = payload.get("source").and_then(Value::as_str) == Some("aws.events")
        || payload.get("source").and_then(Value::as_str) == Some("aws.scheduler");
    let s3 = payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:s3");
    scheduled || s3
}

/// One event, timed, logged and counted.
async fn handle_one<R: Registry, F: Fetcher, L: Ledger>(
    registrar: &Registrar<R, F, L>,
    payload: &Value,
    account: &Result<String, jitr_domain::JitrError>,
) -> Result<Report, jitr_domain::JitrError> {
    let started = Instant::now();
    let result = match account {
        Ok(account) => registrar.handle(payload, account).await,
        // Already classified (Permanent.MalformedEvent on invokedFunctionArn): pass it on as is.
        Err(e) => Err(e.clone()),
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The event's own ids, bounded: the JSON log format escapes them, so no quoting here.
    let id = |field: &str| -> String {
        payload
            .get(field)
            .and_then(Value::as_str)
            .map(|v| v.chars().take(80).collect())
            .unwrap_or_default()
    };
    match &result {
        Ok(report) => {
            tracing::info!(
                certificate_id = %report.certificate_id,
                ca_certificate_id = %report.ca_certificate_id,
                thing_name = report.thing_name.as_deref().unwrap_or(""),
                profile = report.profile.as_deref().unwrap_or(""),
                outcome = report.outcome.as_str(),
                reason = report.reason.as_deref().unwrap_or(""),
                revocation_unchecked = report.revocation_unchecked,
                duration_ms,
                "registration event handled"
            );
            telemetry::emit_metric("registration", report.outcome.as_str(), duration_ms);
        }
        Err(err) => {
            let error_type = err.error_type();
            tracing::error!(
                certificate_id = %id("certificateId"),
                ca_certificate_id = %id("caCertificateId"),
                outcome = "Error",
                error_type = %error_type,
                error = %err,
                duration_ms,
                "registration event failed"
            );
            telemetry::emit_metric("registration", &error_type, duration_ms);
        }
    }
    result
}
