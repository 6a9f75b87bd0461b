//! `jitr replay`: each event file through the real registration handler.

use std::path::{Path, PathBuf};

use jitr_core::registry::iot::load_sdk_config_for_endpoint;
use jitr_core::registry::{IotRegistry, Registry};
use jitr_core::revocation::{CrlFetcher, FileCrlFetcher, S3CrlFetcher, SourceCrlFetcher};
use jitr_registration::{Registrar, samples};
use serde_json::{Value, json};

use crate::output::{Failure, line};
use crate::state::collect_state;

pub async fn run(
    files: &[PathBuf],
    samples_dir: Option<PathBuf>,
    endpoint_url: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let dir = match samples_dir {
        Some(dir) => dir,
        None => files
            .first()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .ok_or("no event files")?,
    };
    let samples = samples::load(&dir)?;
    match endpoint_url {
        None => {
            let registrar = Registrar::new(samples.registry, samples.config, FileCrlFetcher);
            replay(&registrar, files, &samples.account, json).await
        }
        Some(url) => {
            let sdk = load_sdk_config_for_endpoint(url).await;
            let fetcher = SourceCrlFetcher::new(S3CrlFetcher::from_sdk_config(&sdk));
            let registrar =
                Registrar::new(IotRegistry::from_sdk_config(&sdk), samples.config, fetcher);
            replay(&registrar, files, &samples.account, json).await
        }
    }
}

async fn replay<R: Registry, F: CrlFetcher>(
    registrar: &Registrar<R, F>,
    files: &[PathBuf],
    account: &str,
    json: bool,
) -> Result<(), Failure> {
    let mut certificate_ids = Vec::new();
    if !json {
        line(format!("{:<28} {:<14} DETAIL", "EVENT", "OUTCOME"))?;
    }
    for file in files {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let result = match serde_json::from_slice::<Value>(&bytes) {
            Ok(payload) => {
                if let Some(id) = payload.get("certificateId").and_then(Value::as_str)
                    && jitr_core::event::is_certificate_id(id)
                    && !certificate_ids.iter().any(|c| c == id)
                {
                    certificate_ids.push(id.to_owned());
                }
                registrar.handle(&payload, account).await
            }
            Err(e) => Err(jitr_core::JitrError::MalformedEvent {
                field: "$",
                problem: e.to_string(),
            }),
        };
        match result {
            Ok(report) if json => line(json!({"event": name, "result": report}))?,
            Ok(report) => {
                let detail = match (&report.thing_name, &report.reason) {
                    (Some(thing), None) => format!("thing {thing}"),
                    (Some(thing), Some(reason)) => format!("thing {thing}, {reason}"),
                    (None, Some(reason)) => reason.clone(),
                    (None, None) => String::new(),
                };
                line(format!(
                    "{name:<28} {:<14} {detail}",
                    report.outcome.as_str()
                ))?;
            }
            Err(err) if json => line(
                json!({"event": name, "error": {"errorType": err.error_type(), "message": err.to_string()}}),
            )?,
            Err(err) => line(format!(
                "{name:<28} {:<14} {}: {err}",
                "Error",
                err.error_type()
            ))?,
        }
    }
    let state = collect_state(registrar.registry(), &certificate_ids)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        line(json!({"registry": state.to_json()}))?;
    } else {
        line("")?;
        line(state.table().trim_end())?;
    }
    Ok(())
}
