//! `jitr doctor --stack NAME`: checks a deployed stack the way an operator would when a device
//! stays PENDING_ACTIVATION, one line per check (ok, or the problem and its fix), and exits
//! non-zero on any problem. Reads only.

mod aws;
pub mod checks;

use jitr_aws::iot::{load_sdk_config, load_sdk_config_for_endpoint};

use crate::output::{Failure, line};

pub async fn run(stack: &str, endpoint_url: Option<&str>) -> Result<(), Failure> {
    let sdk = match endpoint_url {
        Some(url) => load_sdk_config_for_endpoint(url).await,
        None => load_sdk_config().await,
    };
    if sdk.region().is_none() {
        return Err("no AWS region: set AWS_REGION (or a profile's region)".into());
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let facts = aws::gather(&sdk, stack, now).await?;
    let lines = checks::judge(&facts, now);
    let problems = lines.iter().filter(|l| !l.ok).count();
    for check in &lines {
        match &check.fix {
            None => line(format!("ok       {}", check.what))?,
            Some(fix) => {
                line(format!("PROBLEM  {}", check.what))?;
                line(format!("         fix: {fix}"))?;
            }
        }
    }
    line(format!(
        "doctor: {} checks, {problems} problem(s)",
        lines.len()
    ))?;
    if problems > 0 {
        return Err(Failure::Message(format!(
            "{problems} problem(s) in stack {stack}"
        )));
    }
    Ok(())
}
