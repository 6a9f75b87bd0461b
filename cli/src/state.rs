//! The registry state after a replay, read back through the port so the same code prints
//! the embedded registry and an emulator. Certificates and Things that no longer exist are
//! shown as deleted: after a decommission, that is the point.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jitr_domain::registry::{Registry, RegistryError, RegistryErrorKind, certificate_id_from_arn};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct CertificateState {
    pub id: String,
    /// The subject CN, to tell certificates apart at a glance.
    pub subject: String,
    pub status: String,
    pub things: Vec<String>,
    pub policies: Vec<String>,
}

#[derive(Debug, Default)]
pub struct RegistryState {
    pub certificates: Vec<CertificateState>,
    /// Thing → attached certificate ids (short), or `None` if the Thing does not exist.
    pub things: BTreeMap<String, Option<Vec<String>>>,
}

/// Describes each certificate and Thing with its attachments.
pub async fn collect_state<R: Registry>(
    registry: &R,
    certificate_ids: &[String],
    thing_names: &[String],
) -> Result<RegistryState, RegistryError> {
    let mut state = RegistryState::default();
    for id in certificate_ids {
        let description = match registry.describe_certificate(id).await {
            Ok(d) => d,
            Err(e) if e.kind() == RegistryErrorKind::NotFound => {
                state.certificates.push(CertificateState {
                    id: id.clone(),
                    subject: String::new(),
                    status: "(deleted)".into(),
                    things: Vec::new(),
                    policies: Vec::new(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let things = registry.list_principal_things(&description.arn).await?;
        let policies = registry.list_attached_policies(&description.arn).await?;
        for thing in &things {
            state
                .things
                .entry(thing.clone())
                .or_insert_with(|| Some(Vec::new()));
        }
        state.certificates.push(CertificateState {
            id: id.clone(),
            subject: jitr_domain::certificate::common_name(&description.pem).unwrap_or_default(),
            status: description.status.to_string(),
            things,
            policies,
        });
    }
    for thing in thing_names {
        state.things.entry(thing.clone()).or_insert(None);
    }
    for (thing, principals) in &mut state.things {
        *principals = match registry.list_thing_principals(thing).await {
            Ok(arns) => Some(
                arns.iter()
                    .map(|arn| short(certificate_id_from_arn(arn).unwrap_or(arn)))
                    .collect(),
            ),
            Err(e) if e.kind() == RegistryErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
    }
    Ok(state)
}

impl RegistryState {
    pub fn to_json(&self) -> Value {
        json!({
            "certificates": self.certificates.iter().map(|c| json!({
                "certificateId": c.id, "subject": c.subject, "status": c.status, "things": c.things, "policies": c.policies
            })).collect::<Vec<_>>(),
            "things": self.things,
        })
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            // STATUS fits PENDING_ACTIVATION (18), the longest status.
            "{:<14} {:<24} {:<18} {:<26} POLICIES",
            "CERTIFICATE", "SUBJECT CN", "STATUS", "THINGS"
        );
        for c in &self.certificates {
            let _ = writeln!(
                out,
                "{:<14} {:<24} {:<18} {:<26} {}",
                short(&c.id),
                display_width(&c.subject, 24),
                c.status,
                dash_if_empty(&c.things.join(",")),
                dash_if_empty(&c.policies.join(","))
            );
        }
        let _ = writeln!(out, "\n{:<22} PRINCIPALS", "THING");
        for (thing, principals) in &self.things {
            let principals = principals.as_ref().map_or_else(
                || "(deleted)".to_owned(),
                |p| dash_if_empty(&p.join(",")).to_owned(),
            );
            let _ = writeln!(out, "{thing:<22} {principals}");
        }
        out
    }
}

fn short(id: &str) -> String {
    format!("{}…", id.get(..12).unwrap_or(id))
}

/// Escaped (a CN is untrusted input) and cut to `width` characters.
fn display_width(s: &str, width: usize) -> String {
    let escaped: String = s.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > width {
        escaped
            .chars()
            .take(width - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        escaped
    }
}

fn dash_if_empty(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
