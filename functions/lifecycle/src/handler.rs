//! One invocation: recognise the input (Function URL webhook, SQS batch, EventBridge event or
//! a direct neutral command), apply it, and answer in that input's own terms: an HTTP response,
//! `batchItemFailures`, or the summary (errors classified as `<Class>.<Kind>`). One function takes
//! all four, so the input is told apart by its shape, then read as `aws_lambda_events`' type.

use std::time::Instant;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlResponse;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use jitr_aws::telemetry;
use jitr_domain::JitrError;
use jitr_domain::ledger::{EventStamp, Ledger, StampError};
use jitr_domain::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::transitions::{Lifecycle, Summary};
use jitr_domain::command::DeviceCommand;
use jitr_domain::webhook::{WebhookError, WebhookRequest, is_function_url_request, parse_envelope};

/// Handles any supported payload at `now` (seconds since the epoch).
pub async fn handle_payload<R: Registry, L: Ledger>(
    lifecycle: &Lifecycle<R, L>,
    payload: &Value,
    now: i64,
) -> Result<Value, JitrError> {
    if is_function_url_request(payload) {
        return Ok(handle_webhook(lifecycle, payload, now).await);
    }
    if payload.get("Records").is_some_and(Value::is_array) {
        let batch = SqsEvent::deserialize(payload).map_err(|e| malformed("Records", &e))?;
        return Ok(json!(handle_sqs(lifecycle, batch, now).await));
    }
    let summary = if payload.get("detail-type").is_some() {
        let event = EventBridgeEvent::<Value>::deserialize(payload)
            .map_err(|e| malformed("detail-type", &e))?;
        // The envelope's id and time stamp the command unless it carries its own.
        // PutEvents lets the sender set `time`: it is bounded like any sender's stamp.
        let stamp = event.id.zip(event.time).map(|(id, time)| Stamped {
            stamp: EventStamp {
                at_ms: time.timestamp_millis(),
                id: format!("eventbridge:{id}"),
            },
            time_field: "time",
            id_field: "id",
        });
        let command = DeviceCommand::from_value(&event.detail);
        run_command(lifecycle, "eventbridge", command, stamp, now).await?
    } else {
        let command = DeviceCommand::from_value(payload);
        run_command(lifecycle, "direct", command, None, now).await?
    };
    Ok(json!(summary))
}

/// An envelope that does not read as its type: the field it was recognised by, and why.
fn malformed(field: &'static str, err: &serde_json::Error) -> JitrError {
    JitrError::MalformedEvent {
        field,
        problem: jitr_domain::event::escape(&err.to_string()),
    }
}

/// A sender's stamp and the fields it was read from, to name the one refused.
#[derive(Debug)]
struct Stamped {
    stamp: EventStamp,
    time_field: &'static str,
    id_field: &'static str,
}

impl Stamped {
    /// Refuses a stamp out of bounds at `now` (seconds), naming its field (invariant 9): a time
    /// far ahead would make every later decision stale, one far behind is no real event.
    fn check(&self, now: i64) -> Result<(), JitrError> {
        self.stamp
            .check(now.saturating_mul(1000))
            .map_err(|err| JitrError::MalformedEvent {
                field: match err {
                    StampError::BadId => self.id_field,
                    StampError::TooOld | StampError::InFuture => self.time_field,
                },
                problem: err.to_string(),
            })
    }
}

/// Applies a parsed (or unparseable) command, with one log line and one metric line. The
/// command's own stamp wins over its envelope's, which wins over its arrival time; a sender's
/// stamp out of bounds at `now` refuses the command.
async fn run_command<R: Registry, L: Ledger>(
    lifecycle: &Lifecycle<R, L>,
    source: &str,
    command: Result<DeviceCommand, JitrError>,
    envelope: Option<Stamped>,
    now: i64,
) -> Result<Summary, JitrError> {
    let started = Instant::now();
    let (device_id, action) = command
        .as_ref()
        .map(|c| (c.device_id.clone(), c.action.as_str()))
        .unwrap_or_default();
    let result = match command {
        Ok(command) => {
            let stamped = command
                .stamp
                .clone()
                .map(|stamp| Stamped {
                    stamp,
                    time_field: "eventTime",
                    id_field: "eventId",
                })
                .or(envelope);
            match stamped.as_ref().map(|s| s.check(now)).transpose() {
                Ok(_) => {
                    let stamp = stamped
                        .map_or_else(|| EventStamp::arrival(jitr_aws::unix_now_ms()), |s| s.stamp);
                    lifecycle.apply(&command, &stamp, source).await
                }
                Err(err) => Err(err),
            }
        }
        Err(e) => Err(e),
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &result {
        Ok(summary) if summary.outcome == "DeviceUnresolved" => {
            // Recorded, so it stands when the device connects, but nothing carries the id yet:
            // worth a look if it persists (a profile not filling the attribute, a wrong id).
            tracing::warn!(
                source, device_id = %device_id, action, outcome = summary.outcome,
                recorded = summary.recorded, duration_ms,
                "no Thing carries this device id; the decision waits for the device"
            );
            telemetry::emit_metric("lifecycle", summary.outcome, duration_ms);
        }
        Ok(summary) => {
            tracing::info!(
                source, device_id = %device_id, action, outcome = summary.outcome,
                recorded = summary.recorded, certificates = summary.certificates.len(),
                thing_deleted = summary.thing_deleted, duration_ms, "lifecycle event handled"
            );
            telemetry::emit_metric("lifecycle", summary.outcome, duration_ms);
        }
        Err(err) => {
            let error_type = err.error_type();
            tracing::error!(source, device_id = %device_id, action, outcome = "Error", error_type = %error_type, error = %err, duration_ms, "lifecycle event failed");
            telemetry::emit_metric("lifecycle", &error_type, duration_ms);
        }
    }
    result
}

/// SQS: each message is a neutral command; failures are reported per message so only they
/// are retried (and, past the queue's maxReceiveCount, land in its dead-letter queue).
async fn handle_sqs<R: Registry, L: Ledger>(
    lifecycle: &Lifecycle<R, L>,
    batch: SqsEvent,
    now: i64,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.unwrap_or_default();
        let command = message
            .body
            .ok_or_else(|| JitrError::MalformedEvent {
                field: "body",
                problem: "missing".into(),
            })
            .and_then(|body| {
                serde_json::from_str::<Value>(&body).map_err(|e| malformed("body", &e))
            })
            .and_then(|value| DeviceCommand::from_value(&value));
        // A redelivery keeps its message id and send time, so it is recognised once applied.
        let sent = message
            .attributes
            .get("SentTimestamp")
            .and_then(|ms| ms.parse::<i64>().ok());
        let envelope = sent.filter(|_| !id.is_empty()).map(|at_ms| Stamped {
            stamp: EventStamp {
                at_ms,
                id: format!("sqs:{id}"),
            },
            time_field: "SentTimestamp",
            id_field: "messageId",
        });
        if run_command(lifecycle, "sqs", command, envelope, now)
            .await
            .is_err()
        {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// A Function URL webhook: always an HTTP response, never a Lambda error.
async fn handle_webhook<R: Registry, L: Ledger>(
    lifecycle: &Lifecycle<R, L>,
    payload: &Value,
    now: i64,
) -> Value {
    let config = lifecycle.config();
    let secrets = lifecycle.webhook_secrets();
    let authenticated = async {
        let request = WebhookRequest::from_event(payload)?;
        let secret = secrets.current().await.map_err(|err| {
            tracing::warn!(error = %err, "webhook secret past its maximum age and unreadable");
            WebhookError::SecretUnavailable
        })?;
        match request.authenticate(secret.as_ref()) {
            // Perhaps rotated in Secrets Manager since it was read: read it again (shared, at
            // most once per interval) and check once more.
            Err(WebhookError::BadSignature) if secrets.reread(secret.as_ref()).await => {
                let again = secrets
                    .current()
                    .await
                    .map_err(|_| WebhookError::SecretUnavailable)?;
                request.authenticate(again.as_ref())?;
            }
            other => other?,
        }
        let event = parse_envelope(&request.body)?;
        event.check_fresh(now, config.webhook_max_age_secs)?;
        Ok::<_, WebhookError>(event)
    }
    .await;
    let event = match authenticated {
        Ok(event) => event,
        Err(err) => return refuse(&err),
    };
    let command = event.command();
    let command = match command {
        Ok(command) => command,
        Err(err) => return refuse(&err),
    };
    tracing::info!(webhook_id = %jitr_domain::event::escape(&event.id), webhook_type = %event.kind, device_id = %command.device_id, "webhook authenticated");
    let stamp = Stamped {
        stamp: event.stamp(),
        time_field: "time",
        id_field: "id",
    };
    match run_command(lifecycle, "webhook", Ok(command), Some(stamp), now).await {
        Ok(summary) => http(200, &json!(summary)),
        Err(err) => {
            let status = match (&err, err.class()) {
                (JitrError::MalformedEvent { .. }, _) => 400,
                (_, jitr_domain::ErrorClass::Retryable) => 503,
                (_, jitr_domain::ErrorClass::Permanent) => 500,
            };
            http(status, &json!({"error": err.error_type()}))
        }
    }
}

fn refuse(err: &WebhookError) -> Value {
    // Only the code and the reason: never the signature, the secret or the body.
    tracing::warn!(status = err.status(), reason = err.code(), detail = %err, "webhook refused");
    telemetry::emit_metric("lifecycle", &format!("Webhook.{}", err.code()), 0.0);
    http(
        err.status(),
        &json!({"error": err.code(), "message": err.to_string()}),
    )
}

/// A Function URL response (`aws_lambda_events`' type: every field a runtime that reads it
/// strictly, as `cargo lambda watch` does, needs), with a JSON body.
pub fn http(status: u16, body: &Value) -> Value {
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = status.into();
    response.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.body = Some(body.to_string());
    json!(response)
}
