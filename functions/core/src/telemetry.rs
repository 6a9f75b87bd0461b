//! Logs and metrics: JSON log lines through `tracing` (fields, not prose), and one CloudWatch
//! embedded-metric-format line per invocation, so no agent or extra API call is needed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// The namespace of every metric the functions emit.
pub const METRIC_NAMESPACE: &str = "IotJitr";

/// Metric lines are for the Lambda process only (the CLI runs the same handlers quietly).
static METRICS_ENABLED: AtomicBool = AtomicBool::new(false);

/// Installs the JSON log subscriber (verbosity from `RUST_LOG` or Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`) and turns metric lines on: what a function's `main` calls.
pub fn init_logging() {
    METRICS_ENABLED.store(true, Ordering::Relaxed);
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| "info".to_owned())
        .to_lowercase();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time() // Lambda stamps every line
        .init();
}

/// One EMF line: a count of 1 for `outcome`, dimensioned by function and outcome.
pub fn metric_line(function: &str, outcome: &str, duration_ms: f64) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Function", "Outcome"]],
                "Metrics": [
                    {"Name": "Events", "Unit": "Count"},
                    {"Name": "DurationMs", "Unit": "Milliseconds"}
                ]
            }]
        },
        "Function": function,
        "Outcome": outcome,
        "Events": 1,
        "DurationMs": duration_ms,
    })
    .to_string()
}

/// Writes the EMF line to stdout, where Lambda's log capture picks it up (once `init_logging`
/// has run).
pub fn emit_metric(function: &str, outcome: &str, duration_ms: f64) {
    if METRICS_ENABLED.load(Ordering::Relaxed) {
        println!("{}", metric_line(function, outcome, duration_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_line_is_valid_emf() {
        let line: serde_json::Value =
            serde_json::from_str(&metric_line("registration", "Activated", 12.5)).unwrap();
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            METRIC_NAMESPACE
        );
        assert_eq!(line["Outcome"], "Activated");
        assert_eq!(line["Events"], 1);
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    }
}
