//! The lifecycle function's configuration, read once at cold start; an invalid value fails the
//! cold start with a message naming the variable.

use jitr_domain::JitrError;
use jitr_domain::config::{LedgerSettings, bool_variable, config_error, device_id_attribute};
use jitr_domain::webhook::WebhookSecret;

/// How old (or how far in the future) a webhook's `time` may be before it is refused as a replay.
pub const DEFAULT_WEBHOOK_MAX_AGE_SECS: i64 = 15 * 60;

/// Validated configuration of the lifecycle function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// `WEBHOOK_SECRET`: the webhook secret itself, for local runs; without it (or
    /// `WEBHOOK_SECRET_ARN`) every webhook is refused.
    pub webhook_secret: Option<WebhookSecret>,
    /// `WEBHOOK_SECRET_ARN`: the Secrets Manager secret holding it (its ARN, or name: whatever
    /// GetSecretValue takes), read at cold start and again
    /// on a mismatch (deployed functions: the value never sits in the function's environment).
    pub webhook_secret_arn: Option<String>,
    /// `DECOMMISSION_DELETES_CERTIFICATES` (default true).
    pub decommission_deletes_certificates: bool,
    /// `WEBHOOK_MAX_AGE_SECONDS` (default 900): the replay window.
    pub webhook_max_age_secs: i64,
    /// `DEVICE_LEDGER_TABLE` and `DEVICE_LEDGER_HISTORY_DAYS`: where decisions are recorded
    /// (and ordered) before they are applied, so registration honours them.
    pub device_ledger: Option<LedgerSettings>,
    /// `DEVICE_ID_ATTRIBUTE`: when set, a command's device id is the device-management system's
    /// own id (Mender's), found on the Thing attribute of that name (registration fills it); the
    /// ledger knows the device by it, so a decision stands before the device ever connects.
    pub device_id_attribute: Option<String>,
}

impl LifecycleConfig {
    pub fn from_env() -> Result<Self, JitrError> {
        Self::from_lookup(jitr_aws::environment::variable)
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, JitrError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let webhook_secret = get("WEBHOOK_SECRET")
            .map(|s| WebhookSecret::parse(&s))
            .transpose()
            .map_err(|e| config_error("WEBHOOK_SECRET", &e))?;
        let webhook_secret_arn = get("WEBHOOK_SECRET_ARN");
        if webhook_secret.is_some() && webhook_secret_arn.is_some() {
            return Err(config_error(
                "WEBHOOK_SECRET_ARN",
                "set WEBHOOK_SECRET_ARN (deployed) or WEBHOOK_SECRET (local runs), not both",
            ));
        }
        let decommission_deletes_certificates = bool_variable(
            "DECOMMISSION_DELETES_CERTIFICATES",
            get("DECOMMISSION_DELETES_CERTIFICATES"),
            true,
        )?;
        let webhook_max_age_secs = match get("WEBHOOK_MAX_AGE_SECONDS") {
            None => DEFAULT_WEBHOOK_MAX_AGE_SECS,
            Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                config_error(
                    "WEBHOOK_MAX_AGE_SECONDS",
                    &format!("expected a positive number of seconds, got {v:?}"),
                )
            })?,
        };
        let device_ledger = LedgerSettings::from_lookup(&get)?;
        let device_id_attribute = device_id_attribute(&get)?;
        Ok(Self {
            webhook_secret,
            webhook_secret_arn,
            decommission_deletes_certificates,
            webhook_max_age_secs,
            device_ledger,
            device_id_attribute,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<LifecycleConfig, JitrError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        LifecycleConfig::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_and_overrides() {
        let config = load(&[]).unwrap();
        assert_eq!(config.webhook_secret, None);
        assert!(config.decommission_deletes_certificates);
        assert_eq!(config.webhook_max_age_secs, 900);
        let config = load(&[
            ("WEBHOOK_SECRET", "0123456789abcdef"),
            ("DECOMMISSION_DELETES_CERTIFICATES", "false"),
            ("WEBHOOK_MAX_AGE_SECONDS", "60"),
            ("DEVICE_LEDGER_TABLE", "fleet-ledger"),
            ("DEVICE_LEDGER_HISTORY_DAYS", "30"),
            ("DEVICE_ID_ATTRIBUTE", "menderId"),
        ])
        .unwrap();
        assert_eq!(config.device_id_attribute.as_deref(), Some("menderId"));
        assert_eq!(
            config.device_ledger,
            Some(LedgerSettings {
                table: "fleet-ledger".into(),
                history_days: 30,
            })
        );
        assert_eq!(
            config.webhook_secret.as_ref().map(WebhookSecret::expose),
            Some(&b"0123456789abcdef"[..])
        );
        assert!(!config.decommission_deletes_certificates);
        assert_eq!(config.webhook_max_age_secs, 60);
        assert_eq!(
            format!("{config:?}").matches("0123456789abcdef").count(),
            0,
            "the secret is never printed"
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (vars, variable) in [
            (&[("WEBHOOK_SECRET", "short")][..], "WEBHOOK_SECRET"),
            (
                &[("DECOMMISSION_DELETES_CERTIFICATES", "yes")][..],
                "DECOMMISSION_DELETES_CERTIFICATES",
            ),
            (
                &[("WEBHOOK_MAX_AGE_SECONDS", "-5")][..],
                "WEBHOOK_MAX_AGE_SECONDS",
            ),
            (
                &[("WEBHOOK_MAX_AGE_SECONDS", "soon")][..],
                "WEBHOOK_MAX_AGE_SECONDS",
            ),
            (
                &[("DEVICE_LEDGER_TABLE", "no spaces")][..],
                "DEVICE_LEDGER_TABLE",
            ),
            (
                &[
                    ("DEVICE_LEDGER_TABLE", "fleet-ledger"),
                    ("DEVICE_LEDGER_HISTORY_DAYS", "0"),
                ][..],
                "DEVICE_LEDGER_HISTORY_DAYS",
            ),
            (
                &[("DEVICE_ID_ATTRIBUTE", "mender id")][..],
                "DEVICE_ID_ATTRIBUTE",
            ),
        ] {
            match load(vars) {
                Err(JitrError::Config { variable: got, .. }) => assert_eq!(got, variable),
                other => panic!("{vars:?}: {other:?}"),
            }
        }
    }
}
