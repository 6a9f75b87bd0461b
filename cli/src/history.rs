//! `jitr history --thing NAME` (or `--device-id ID`): the device ledger's record of a device and
//! its decisions in time order (registration outcomes, lifecycle actions), read from
//! `DEVICE_LEDGER_TABLE`. With `DEVICE_ID_ATTRIBUTE` the ledger knows devices by their
//! device-management id: a Thing is looked up for it, or the id is given as is.

use jitr_aws::DynamoLedger;
use jitr_aws::iot::{IotRegistry, load_sdk_config, load_sdk_config_for_endpoint};
use jitr_domain::event::printable;
use jitr_domain::ledger::{DeviceRecord, HistoryEntry, Ledger, device_key, id_key};
use jitr_domain::registry::{Registry, RegistryErrorKind};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::output::{Failure, line};

/// Which device: by its Thing's name or by its device-management id.
#[derive(Debug, Clone)]
pub enum DeviceRef {
    Thing(String),
    DeviceId(String),
}

pub async fn run(
    endpoint_url: Option<&str>,
    target: &DeviceRef,
    json: bool,
) -> Result<(), Failure> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let settings = jitr_domain::config::LedgerSettings::from_lookup(&env)
        .map_err(|e| e.to_string())?
        .ok_or(
            "set DEVICE_LEDGER_TABLE to the ledger table (the stack output DeviceLedgerTableName)",
        )?;
    let id_attribute = jitr_domain::config::device_id_attribute(&env).map_err(|e| e.to_string())?;
    let sdk = match endpoint_url {
        Some(url) => load_sdk_config_for_endpoint(url).await,
        None => load_sdk_config().await,
    };
    let key = match (target, id_attribute.as_deref()) {
        (DeviceRef::DeviceId(id), Some(attribute)) => id_key(attribute, id),
        (DeviceRef::DeviceId(_), None) => {
            return Err(
                "--device-id needs DEVICE_ID_ATTRIBUTE (the Thing attribute carrying the id)"
                    .into(),
            );
        }
        (DeviceRef::Thing(name), None) => name.clone(),
        (DeviceRef::Thing(name), Some(attribute)) => {
            match IotRegistry::from_sdk_config(&sdk)
                .describe_thing(name)
                .await
            {
                Ok(thing) => device_key(name, &thing.attributes, Some(attribute)),
                // No Thing (never admitted, or decommissioned): known by its name, if at all.
                Err(e) if e.kind() == RegistryErrorKind::NotFound => name.clone(),
                Err(e) => return Err(e.to_string().into()),
            }
        }
    };
    let ledger = DynamoLedger::from_settings(&sdk, &settings);
    let failed = |e: jitr_domain::ledger::LedgerError| Failure::from(e.to_string());
    let device = ledger.device(&key).await.map_err(failed)?;
    let history = ledger.history(&key).await.map_err(failed)?;
    if json {
        let value = serde_json::json!({"deviceKey": key, "device": device, "history": history});
        return line(serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
    }
    print_ledger(&key, device.as_ref(), &history)
}

/// The record and the history as text (shared with `jitr explain`).
pub fn print_ledger(
    thing: &str,
    device: Option<&DeviceRecord>,
    history: &[HistoryEntry],
) -> Result<(), Failure> {
    let Some(device) = device else {
        return line(format!("Device {thing}: not in the ledger"));
    };
    line(format!("Device {thing}"))?;
    let standing = match &device.decision {
        Some(d) => format!(
            "{} (by {} {} at {}{})",
            d.state.as_str(),
            printable(&d.action),
            printable(&d.event.id),
            time_ms(d.event.at_ms),
            if device.applied(&d.event) {
                ""
            } else {
                ", not fully applied yet"
            }
        ),
        None => "no device-management decision (admitted on its certificate's merits)".into(),
    };
    line(format!("  standing         {standing}"))?;
    let list = |ids: &std::collections::BTreeSet<String>| {
        if ids.is_empty() {
            "-".to_owned()
        } else {
            ids.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    line(format!("  certificates     {}", list(&device.certificates)))?;
    line(format!("  retired          {}", list(&device.retired)))?;
    if let Some(latest) = &device.latest {
        line(format!(
            "  latest           {} (notBefore {})",
            latest.certificate_id,
            time_ms(latest.not_before * 1000)
        ))?;
    }
    line("")?;
    line(format!(
        "{:<24}  {:<20}  {:<14}  {:<16}  REASON",
        "TIME", "SOURCE", "WHAT", "CERTIFICATE"
    ))?;
    for entry in history {
        let certificate = entry
            .certificate_id
            .as_deref()
            .map_or("-".to_owned(), |id| id.chars().take(16).collect());
        // Stored as sent before control characters were refused, perhaps: shown escaped.
        let reason = match (&entry.reason, &entry.event_id) {
            (Some(reason), Some(id)) => format!("{} [{}]", printable(reason), printable(id)),
            (Some(reason), None) => printable(reason).into_owned(),
            (None, Some(id)) => format!("[{}]", printable(id)),
            (None, None) => String::new(),
        };
        line(format!(
            "{:<24}  {:<20}  {:<14}  {:<16}  {reason}",
            time_ms(entry.at_ms),
            printable(&entry.source),
            printable(&entry.what),
            certificate
        ))?;
    }
    Ok(())
}

fn time_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}
