//! `jitr replay`: event files through the real handlers, on the embedded registry seeded from
//! the samples' `registry.json`, or against an endpoint; then the registry state.

use std::path::{Path, PathBuf};

use jitr_aws::IotRegistry;
use jitr_aws::SourceFetcher;
use jitr_aws::iot::load_sdk_config_for_endpoint;
use jitr_domain::registry::Registry;
use jitr_domain::samples::{self, SampleRegistry};
use jitr_domain::source::Fetcher;
use jitr_domain::{Config, JitrError};
use jitr_lifecycle::{Lifecycle, LifecycleConfig, handle_payload};
use jitr_registration::Registrar;
use serde_json::{Value, json};

use crate::output::{Failure, line};
use crate::state::collect_state;

/// Which handler the events are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Function {
    Registration,
    Lifecycle,
}

pub async fn run(
    function: Function,
    files: &[PathBuf],
    samples_dir: Option<PathBuf>,
    endpoint_url: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let dir = match samples_dir {
        Some(dir) => dir,
        // The folder of the first event; a bare file name means the current folder.
        None => files
            .first()
            .map(|f| match f.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .ok_or("no event files")?,
    };
    let sample = samples::load(&dir).await.map_err(|e| {
        format!(
            "{e} (the sample folder with registry.json is the first event's folder; name another with --samples DIR)"
        )
    })?;
    let sdk = match endpoint_url {
        Some(url) => Some(load_sdk_config_for_endpoint(url).await),
        None => None,
    };
    let (certificates, things) = (sample.certificate_ids.clone(), sample.things.clone());
    let out = Output { json };
    match (function, sdk) {
        (Function::Registration, None) => {
            let config = registration_config(&sample)?;
            let registrar = Registrar::new(sample.registry, config, SourceFetcher::without_s3());
            let failed = replay_registration(&registrar, files, &sample.account, out).await?;
            out.state(registrar.registry(), &certificates, &things)
                .await?;
            outcome(failed, files.len())
        }
        (Function::Registration, Some(sdk)) => {
            let config = registration_config(&sample)?;
            let fetcher = SourceFetcher::from_sdk_config(&sdk, config.address_policy());
            let registrar = Registrar::new(IotRegistry::from_sdk_config(&sdk), config, fetcher);
            let failed = replay_registration(&registrar, files, &sample.account, out).await?;
            out.state(registrar.registry(), &certificates, &things)
                .await?;
            outcome(failed, files.len())
        }
        (Function::Lifecycle, None) => {
            let (config, now) = (lifecycle_config(&sample)?, clock(&sample)?);
            let lifecycle = Lifecycle::new(sample.registry, config);
            let failed = replay_lifecycle(&lifecycle, files, now, out).await?;
            out.state(lifecycle.registry(), &certificates, &things)
                .await?;
            outcome(failed, files.len())
        }
        (Function::Lifecycle, Some(sdk)) => {
            let (config, now) = (lifecycle_config(&sample)?, clock(&sample)?);
            let lifecycle = Lifecycle::new(IotRegistry::from_sdk_config(&sdk), config);
            let failed = replay_lifecycle(&lifecycle, files, now, out).await?;
            out.state(lifecycle.registry(), &certificates, &things)
                .await?;
            outcome(failed, files.len())
        }
    }
}

/// Success only when no event failed.
fn outcome(failed: usize, total: usize) -> Result<(), Failure> {
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::EventsFailed { failed, total })
    }
}

fn registration_config(sample: &SampleRegistry) -> Result<Config, Failure> {
    Config::from_lookup(|name| sample.variable(name)).map_err(|e| Failure::Message(e.to_string()))
}

fn lifecycle_config(sample: &SampleRegistry) -> Result<LifecycleConfig, Failure> {
    LifecycleConfig::from_lookup(|name| sample.variable(name))
        .map_err(|e| Failure::Message(e.to_string()))
}

/// The samples' clock (their webhooks are signed for it), or now.
fn clock(sample: &SampleRegistry) -> Result<i64, Failure> {
    use time::format_description::well_known::Rfc3339;
    match &sample.now {
        Some(text) => time::OffsetDateTime::parse(text, &Rfc3339)
            .map(|t| t.unix_timestamp())
            .map_err(|e| Failure::Message(format!("registry.json now: {e}"))),
        None => Ok(time::OffsetDateTime::now_utc().unix_timestamp()),
    }
}

fn file_name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads a file as JSON; bytes that are not JSON are a malformed event.
fn read_payload(file: &Path) -> Result<Result<Value, JitrError>, Failure> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(
        serde_json::from_slice::<Value>(&bytes).map_err(|e| JitrError::MalformedEvent {
            field: "$",
            problem: e.to_string(),
        }),
    )
}

#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn header(self) -> Result<(), Failure> {
        if self.json {
            Ok(())
        } else {
            line(format!("{:<38} {:<14} DETAIL", "EVENT", "OUTCOME"))
        }
    }

    fn row(self, name: &str, outcome: &str, detail: &str, value: Value) -> Result<(), Failure> {
        if self.json {
            line(json!({"event": name, "result": value}))
        } else {
            line(format!("{name:<38} {outcome:<14} {detail}"))
        }
    }

    fn error(self, name: &str, err: &JitrError) -> Result<(), Failure> {
        let value = json!({"errorType": err.error_type(), "message": err.to_string()});
        if self.json {
            line(json!({"event": name, "error": value}))
        } else {
            line(format!(
                "{name:<38} {:<14} {}: {err}",
                "Error",
                err.error_type()
            ))
        }
    }

    async fn state<R: Registry>(
        self,
        registry: &R,
        certificates: &[String],
        things: &[String],
    ) -> Result<(), Failure> {
        let state = collect_state(registry, certificates, things)
            .await
            .map_err(|e| e.to_string())?;
        if self.json {
            line(json!({"registry": state.to_json()}))
        } else {
            line("")?;
            line(state.table().trim_end())
        }
    }
}

async fn replay_registration<R: Registry, F: Fetcher>(
    registrar: &Registrar<R, F>,
    files: &[PathBuf],
    account: &str,
    out: Output,
) -> Result<usize, Failure> {
    out.header()?;
    let mut failed = 0;
    for file in files {
        let name = file_name(file);
        let result = match read_payload(file)? {
            Ok(payload) => registrar.handle(&payload, account).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(report) => {
                let mut detail: Vec<String> = Vec::new();
                detail.extend(report.thing_name.iter().map(|t| format!("thing {t}")));
                detail.extend(report.reason.iter().cloned());
                // The profile is news only when a document names several.
                if let Some(profile) = report.profile.as_deref().filter(|p| *p != "default") {
                    detail.push(format!("profile {profile}"));
                }
                let detail = detail.join(", ");
                out.row(&name, report.outcome.as_str(), &detail, json!(report))?;
            }
            Err(err) => {
                failed += 1;
                out.error(&name, &err)?;
            }
        }
    }
    Ok(failed)
}

async fn replay_lifecycle<R: Registry>(
    lifecycle: &Lifecycle<R>,
    files: &[PathBuf],
    now: i64,
    out: Output,
) -> Result<usize, Failure> {
    out.header()?;
    let mut failed = 0;
    for file in files {
        let name = file_name(file);
        let result = match read_payload(file)? {
            Ok(payload) => handle_payload(lifecycle, &payload, now).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(response) => {
                let (outcome, detail) = describe_lifecycle_response(&response);
                out.row(&name, &outcome, &detail, response)?;
            }
            Err(err) => {
                failed += 1;
                out.error(&name, &err)?;
            }
        }
    }
    Ok(failed)
}

/// A one-line reading of whatever the lifecycle handler answered.
fn describe_lifecycle_response(response: &Value) -> (String, String) {
    if let Some(status) = response.get("statusCode").and_then(Value::as_u64) {
        let body: Value = response
            .get("body")
            .and_then(Value::as_str)
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        let detail = match body.get("error").and_then(Value::as_str) {
            Some(error) => error.to_owned(),
            None => summary_detail(&body),
        };
        return (format!("HTTP {status}"), detail);
    }
    if let Some(failures) = response.get("batchItemFailures").and_then(Value::as_array) {
        let ids: Vec<&str> = failures
            .iter()
            .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str))
            .collect();
        let detail = if ids.is_empty() {
            "all messages done".to_owned()
        } else {
            format!("retry: {}", ids.join(", "))
        };
        return ("SQS".into(), detail);
    }
    (
        response
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned(),
        summary_detail(response),
    )
}

fn summary_detail(summary: &Value) -> String {
    let device = summary
        .get("deviceId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let action = summary.get("action").and_then(Value::as_str).unwrap_or("");
    let mut parts = vec![format!("{action} {device}:")];
    if let Some(outcome) = summary.get("outcome").and_then(Value::as_str) {
        parts.push(outcome.to_owned());
    }
    for change in summary
        .get("certificates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |k: &str| change.get(k).and_then(Value::as_str).unwrap_or("");
        let id = text("certificateId");
        let mut piece = format!(
            "{}… {}→{}",
            id.get(..8).unwrap_or(id),
            text("before"),
            text("after")
        );
        if let Some(note) = change.get("note").and_then(Value::as_str) {
            piece.push_str(&format!(" ({note})"));
        }
        parts.push(piece);
    }
    if summary
        .get("thingDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        parts.push("thing deleted".into());
    }
    parts.join(" ")
}
