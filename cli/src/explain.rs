//! `jitr explain`: why a device can or cannot connect, from the real registry (an endpoint, or
//! AWS through the SDK's usual credential and region chain) and the real decision code; reads
//! only. The registration function's configuration is read from this shell's variables, as the
//! function reads its own (without `DEVICE_POLICY_NAME`, the template's `jitr-device`).

use jitr_aws::DynamoLedger;
use jitr_aws::IotRegistry;
use jitr_aws::SourceFetcher;
use jitr_aws::iot::{load_sdk_config, load_sdk_config_for_endpoint};
use jitr_domain::Config;
use jitr_registration::{Explanation, Registrar, Target};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::output::{Failure, line};

pub async fn run(endpoint_url: Option<&str>, target: Target, json: bool) -> Result<(), Failure> {
    let config = match std::env::var("DEVICE_POLICY_NAME") {
        Ok(_) => jitr_aws::environment::config().map_err(|e| e.to_string())?,
        Err(_) => Config::from_lookup(|name| match name {
            "DEVICE_POLICY_NAME" => Some("jitr-device".to_owned()),
            other => std::env::var(other).ok(),
        })
        .map_err(|e| e.to_string())?,
    };
    let sdk = match endpoint_url {
        Some(url) => load_sdk_config_for_endpoint(url).await,
        None => load_sdk_config().await,
    };
    let ledger = (config.device_ledger.as_ref()).map(|s| DynamoLedger::from_settings(&sdk, s));
    let fetcher = SourceFetcher::from_sdk_config(&sdk, config.address_policy());
    let registrar = Registrar::new(IotRegistry::from_sdk_config(&sdk), config, fetcher)
        .with_ledger(ledger)
        .reading_only();
    let explanation = registrar
        .explain(&target, jitr_aws::unix_now())
        .await
        .map_err(|e| format!("{}: {e}", e.error_type()))?;
    if json {
        return line(serde_json::to_string_pretty(&explanation).map_err(|e| e.to_string())?);
    }
    print(&target, &explanation)
}

fn date(seconds: Option<i64>) -> String {
    seconds
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "?".into())
}

fn print(target: &Target, explanation: &Explanation) -> Result<(), Failure> {
    match &explanation.thing {
        Some(thing) => {
            line(format!("Thing {}", thing.name))?;
            line(format!(
                "  type             {}",
                thing.type_name.as_deref().unwrap_or("-")
            ))?;
            line(format!(
                "  bound to CA      {}",
                thing
                    .bound_to_ca
                    .as_deref()
                    .unwrap_or("- (no caCertificateId attribute: judged by its certificates)")
            ))?;
            let attributes: Vec<String> = thing
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line(format!("  attributes       {}", attributes.join(", ")))?;
        }
        None => match target {
            Target::Thing(name) => line(format!("Thing {name}: does not exist"))?,
            Target::Certificate(_) => {
                line("Thing: none (the certificate is attached to no Thing)")?
            }
        },
    }
    if explanation.certificates.is_empty() {
        line("  no certificates attached")?;
    }
    for c in &explanation.certificates {
        line("")?;
        line(format!("Certificate {}", c.certificate_id))?;
        line(format!("  status           {}", c.status))?;
        line(format!(
            "  CA               {}",
            c.ca_certificate_id.as_deref().unwrap_or("- (none)")
        ))?;
        line(format!(
            "  subject CN       {}",
            c.common_name.as_deref().unwrap_or("-")
        ))?;
        line(format!(
            "  serial           {}",
            c.serial_hex.as_deref().unwrap_or("?")
        ))?;
        line(format!(
            "  valid            {} .. {}",
            date(c.not_before),
            date(c.not_after)
        ))?;
        line(format!(
            "  policies         {}",
            if c.policies.is_empty() {
                "-".to_owned()
            } else {
                c.policies.join(", ")
            }
        ))?;
        if let Some(indexed) = c.indexed {
            line(format!(
                "  serial index     {}",
                if indexed { "indexed" } else { "not indexed" }
            ))?;
        }
        line(format!(
            "  profile          {}",
            c.profile.as_deref().unwrap_or("-")
        ))?;
        let reason = c
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        line(format!(
            "  registration now {}{reason}: {}",
            c.verdict, c.detail
        ))?;
    }
    let name = match (target, &explanation.thing) {
        (_, Some(thing)) => Some(thing.name.as_str()),
        (Target::Thing(name), None) => Some(name.as_str()),
        (Target::Certificate(_), None) => None,
    };
    if let Some(name) = name
        && (explanation.device.is_some() || !explanation.history.is_empty())
    {
        line("")?;
        crate::history::print_ledger(name, explanation.device.as_ref(), &explanation.history)?;
    }
    Ok(())
}
