//! Logs and metrics: JSON log lines through `tracing` (fields, not prose), and one CloudWatch
//! embedded-metric-format line per invocation, so no agent or extra API call is needed.
//!
//! Set up here rather than with `lambda_runtime`'s `tracing` feature: that subscriber does not
//! cap third-party crates (at TRACE they log payloads and the SigV4 canonical request), maps
//! no FATAL, and brings `env-filter`'s regex engine into each bootstrap.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use tracing::Level;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, fmt};

/// The namespace of every metric the functions emit.
pub const METRIC_NAMESPACE: &str = "IotJitr";

/// Metric lines are for the Lambda process only (the CLI runs the same handlers quietly).
static METRICS_ENABLED: AtomicBool = AtomicBool::new(false);

/// The level metric lines carry (see [`LogSettings::metric_level`]), as an index of `LEVELS`.
static METRIC_LEVEL: AtomicU8 = AtomicU8::new(2);
const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// How the function logs, from Lambda's variables first (its documented order), then `RUST_LOG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `AWS_LAMBDA_LOG_FORMAT=Text` (any case): plain lines; anything else is JSON.
    pub json: bool,
    /// The filter for this project's crates: `AWS_LAMBDA_LOG_LEVEL` (FATAL is ERROR: tracing has
    /// no FATAL, and errors must not be silenced), else `RUST_LOG` (`target=level` directives), else
    /// `info`.
    pub filter: String,
}

impl LogSettings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let json = !lookup("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("text"));
        let filter = match lookup("AWS_LAMBDA_LOG_LEVEL").filter(|l| !l.trim().is_empty()) {
            Some(level) if level.trim().eq_ignore_ascii_case("fatal") => "error".to_owned(),
            Some(level) => level.trim().to_lowercase(),
            None => lookup("RUST_LOG")
                .filter(|l| !l.trim().is_empty())
                .unwrap_or_else(|| "info".to_owned()),
        };
        Self { json, filter }
    }

    /// The level metric lines carry: INFO, or the filter's level when that is above INFO (WARN,
    /// ERROR), so Lambda's level filtering (on JSON lines' `level`, the same setting) never drops
    /// them.
    pub fn metric_level(&self) -> &'static str {
        let most = self
            .filter
            .split(',')
            .filter_map(|d| d.rsplit('=').next()?.trim().parse::<LevelFilter>().ok())
            .max()
            .unwrap_or(LevelFilter::INFO);
        if most >= LevelFilter::INFO {
            "INFO"
        } else if most == LevelFilter::WARN {
            "WARN"
        } else {
            "ERROR"
        }
    }
}

/// Third-party crates log request and response payloads (certificate PEM, webhook bodies) at
/// TRACE and SigV4 canonical requests (with the session token) at DEBUG: whatever level is
/// asked for, they get at most INFO. This project's crates (`jitr_*`) log no payloads at any level.
fn payload_safe(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target().starts_with("jitr") || *metadata.level() <= Level::INFO
}

/// Installs the log subscriber per [`LogSettings`] from the process environment, and turns
/// metric lines on: what a function's `main` calls.
pub fn init_logging() {
    let settings = LogSettings::from_lookup(|name| std::env::var(name).ok());
    let level = LEVELS
        .iter()
        .position(|l| *l == settings.metric_level())
        .unwrap_or(2);
    METRIC_LEVEL.store(u8::try_from(level).unwrap_or(2), Ordering::Relaxed);
    METRICS_ENABLED.store(true, Ordering::Relaxed);
    // `target=level` directives, as RUST_LOG writes them (span and field filters are not taken:
    // they need a regex engine in the bootstrap); anything unreadable logs at INFO.
    let filter = settings
        .filter
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let filter = filter.and(filter_fn(payload_safe));
    let layer = if settings.json {
        json_layer(std::io::stdout).boxed()
    } else {
        fmt::layer()
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .boxed()
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
}

/// JSON lines as Lambda's log-level filter reads them: a `level` and an RFC 3339 `timestamp`
/// on every line. Without the timestamp Lambda treats the line as INFO, so at
/// ApplicationLogLevel WARN or ERROR every error would be dropped
/// (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
fn json_layer<W>(writer: W) -> impl Layer<Registry>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_timer(fmt::time::SystemTime)
        .with_writer(writer)
}

/// Now, as the log lines write it (RFC 3339, UTC, microseconds).
fn rfc3339_now() -> String {
    let mut now = String::new();
    // Writing into a String cannot fail.
    let _ = fmt::time::SystemTime.format_time(&mut fmt::format::Writer::new(&mut now));
    now
}

/// The outcome's class, the rollback alarm's dimension: `Permanent` and `Retryable` failures
/// (`Permanent.Config`, `Retryable.Throttled`, ...), and `Handled` for everything else.
pub fn outcome_class(outcome: &str) -> &'static str {
    match outcome.split('.').next() {
        Some("Permanent") => "Permanent",
        Some("Retryable") => "Retryable",
        _ => "Handled",
    }
}

/// The span every line of one invocation is logged in: its request id and X-Ray trace id. At
/// ERROR, so it is there whatever level is asked for.
pub fn invocation_span(request_id: &str, xray_trace_id: Option<&str>) -> tracing::Span {
    tracing::error_span!(
        "invocation",
        request_id,
        xray_trace_id = xray_trace_id.unwrap_or("")
    )
}

/// One EMF line: a count of 1 for `outcome`, dimensioned by function and outcome, and by
/// function and [`outcome_class`] (what the canary's rollback alarm watches). It carries
/// `level` and `timestamp` like every log line, so Lambda's level filter keeps it.
pub fn metric_line(function: &str, outcome: &str, duration_ms: f64) -> String {
    let level = LEVELS[usize::from(METRIC_LEVEL.load(Ordering::Relaxed)).min(4)];
    metric_line_at(level, function, outcome, duration_ms)
}

fn metric_line_at(level: &str, function: &str, outcome: &str, duration_ms: f64) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    json!({
        "level": level,
        "timestamp": rfc3339_now(),
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Function", "Outcome"], ["Function", "Class"]],
                "Metrics": [
                    {"Name": "Events", "Unit": "Count"},
                    {"Name": "DurationMs", "Unit": "Milliseconds"}
                ]
            }]
        },
        "Function": function,
        "Outcome": outcome,
        "Class": outcome_class(outcome),
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
        assert_eq!(line["level"], "INFO");
    }

    /// A log line as Lambda's level filter reads it: the level it files the line under, or
    /// None where the line would be filed as INFO whatever it says (no RFC 3339 timestamp).
    fn level_lambda_reads(line: &str) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let timestamp = value.get("timestamp")?.as_str()?;
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .ok()?;
        let level = value.get("level")?.as_str()?.to_uppercase();
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
            .contains(&level.as_str())
            .then_some(level)
    }

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_json_line_keeps_its_level_under_lambdas_filter() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = invocation_span("request-1", Some("Root=1-abc"));
            let _entered = span.enter();
            tracing::error!(error_type = "Permanent.Config", "registration event failed");
            tracing::warn!("revocation list stale");
            tracing::info!(outcome = "Activated", "registration event handled");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let levels: Vec<Option<String>> = text.lines().map(level_lambda_reads).collect();
        assert_eq!(
            levels,
            [Some("ERROR"), Some("WARN"), Some("INFO")].map(|l| l.map(str::to_owned)),
            "{text}"
        );
        for level in ["ERROR", "WARN", "INFO"] {
            let line = metric_line_at(level, "registration", "Permanent.Config", 1.0);
            assert_eq!(level_lambda_reads(&line).as_deref(), Some(level), "{line}");
        }
    }

    #[test]
    fn the_rollback_alarms_class_dimension_is_on_every_metric_line() {
        for (outcome, class) in [
            ("Permanent.Config", "Permanent"),
            ("Permanent.MalformedEvent", "Permanent"),
            ("Retryable.Throttled", "Retryable"),
            ("Activated", "Handled"),
            ("Rejected", "Handled"),
            ("Webhook.BadSignature", "Handled"),
        ] {
            let line: serde_json::Value =
                serde_json::from_str(&metric_line("registration", outcome, 1.0)).unwrap();
            assert_eq!(line["Class"], class, "{outcome}");
            let dimensions = &line["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
            assert!(
                dimensions
                    .as_array()
                    .unwrap()
                    .contains(&json!(["Function", "Class"])),
                "{dimensions}"
            );
        }
    }

    #[test]
    fn lambdas_variables_come_first_and_fatal_still_logs_errors() {
        let settings = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            LogSettings::from_lookup(move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        };
        // (variables, JSON?, filter, metric level)
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str, &'a str);
        let cases: [Case; 7] = [
            (&[], true, "info", "INFO"),
            (
                &[("AWS_LAMBDA_LOG_LEVEL", "DEBUG"), ("RUST_LOG", "warn")],
                true,
                "debug",
                "INFO",
            ),
            (
                &[("RUST_LOG", "jitr_domain=debug,warn")],
                true,
                "jitr_domain=debug,warn",
                "INFO",
            ),
            (&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")], true, "error", "ERROR"),
            (&[("AWS_LAMBDA_LOG_LEVEL", "WARN")], true, "warn", "WARN"),
            (&[("AWS_LAMBDA_LOG_FORMAT", "Text")], false, "info", "INFO"),
            (
                &[
                    ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
                    ("AWS_LAMBDA_LOG_LEVEL", " "),
                ],
                true,
                "info",
                "INFO",
            ),
        ];
        for (vars, json, filter, metric) in cases {
            let s = settings(vars);
            assert_eq!(
                (s.json, s.filter.as_str(), s.metric_level()),
                (json, filter, metric),
                "{vars:?}"
            );
        }
    }
}
