//! What the registration function logged about the events it failed, captured in the test
//! process: behind the SQS burst buffer a failed message comes back with its id only, and the
//! classified error type is in the function's log line (`registration event failed`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Per certificate id, the error types logged for it, oldest first.
#[derive(Debug, Clone, Default)]
pub struct FailureLog(Arc<Mutex<BTreeMap<String, Vec<String>>>>);

impl FailureLog {
    /// The process-wide log, installed as the global subscriber on first use.
    pub fn global() -> &'static FailureLog {
        static LOG: OnceLock<FailureLog> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = FailureLog::default();
            let subscriber = tracing_subscriber::registry().with(Capture(log.clone()));
            // Another subscriber set first would leave this log empty; the tests then fail
            // on a missing error type, saying so.
            let _ = tracing::subscriber::set_global_default(subscriber);
            log
        })
    }

    /// The error types logged for `certificate_id`.
    pub fn errors_of(&self, certificate_id: &str) -> Vec<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(certificate_id).cloned().unwrap_or_default()
    }
}

struct Capture(FailureLog);

#[derive(Default)]
struct Fields {
    message: String,
    certificate_id: String,
    error_type: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "certificate_id" => self.certificate_id = text,
            "error_type" => self.error_type = text,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == "registration event failed" {
            let mut map = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(fields.certificate_id)
                .or_default()
                .push(fields.error_type);
        }
    }
}
