//! Registration profiles: how devices of each CA are admitted (policies, thing type and groups,
//! naming, attributes, revocation sources, the Thing-binding rule).
//!
//! The configuration variables form the `default` profile, so a deployment without
//! `REGISTRATION_PROFILES` behaves as before; a profiles document (`document`) adds one profile
//! per CA certificate id, each inheriting what it does not say from the default. The document is
//! cached per container (`cache`) and validated strictly: an invalid one fails closed.

use std::collections::BTreeMap;
use std::fmt;

use crate::binding::BindingRule;
use crate::revocation::RevocationSource;
use crate::rotation::RotationPolicy;

mod cache;
mod document;
pub mod template;

pub use cache::ProfilesCache;
pub use document::parse_document;
use template::Template;

/// IoT Core attaches at most 10 policies to one certificate.
pub const MAX_POLICIES: usize = 10;

/// How one CA's devices are admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `default`, or the document's label for the CA (its id when it has none).
    pub name: String,
    /// A disabled profile refuses every device of its CA (`ProfileDisabled`).
    pub enabled: bool,
    /// 1 to 10 IoT policies attached to every certificate.
    pub policies: Vec<String>,
    pub thing_type: Option<String>,
    pub thing_groups: Vec<String>,
    /// The Thing name template.
    pub thing_name: Template,
    /// Attribute name → template; `None` keeps the built-in set (see `decision`).
    pub attributes: Option<BTreeMap<String, Template>>,
    /// Every source is consulted; a serial listed by any of them is revoked.
    pub revocation: Vec<RevocationSource>,
    /// Admit unchecked when a revocation source is unusable (default: fail closed).
    pub revocation_fail_open: bool,
    /// What to do with an existing Thing that carries no CA binding.
    pub thing_binding: BindingRule,
    /// What happens to a device's other certificates when a new one is activated.
    pub rotation: RotationPolicy,
}

/// What happens to a CA the document has no profile for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unlisted {
    /// It gets the default profile (still subject to `ALLOWED_CA_CERTIFICATE_IDS`).
    #[default]
    UseDefault,
    /// It is refused (`NoProfile`): only CAs with a profile admit devices.
    Reject,
}

impl Unlisted {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UseDefault => "default",
            Self::Reject => "reject",
        }
    }
}

/// The default profile and the per-CA profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiles {
    pub default: Profile,
    pub by_ca: BTreeMap<String, Profile>,
    pub unlisted: Unlisted,
}

impl Profiles {
    /// Only the default profile (no document).
    pub fn only(default: Profile) -> Self {
        Self {
            default,
            by_ca: BTreeMap::new(),
            unlisted: Unlisted::UseDefault,
        }
    }

    /// The profile for devices of `ca_certificate_id`; `None` when the CA is refused.
    pub fn for_ca(&self, ca_certificate_id: &str) -> Option<&Profile> {
        match self.by_ca.get(ca_certificate_id) {
            Some(profile) => Some(profile),
            None if self.unlisted == Unlisted::UseDefault => Some(&self.default),
            None => None,
        }
    }
}

/// Why a profiles document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfilesError {
    /// The document could not be read (missing, denied, network).
    #[error("registration profiles unreadable: {0}")]
    Unreadable(String),
    /// The document is not valid; `field` is the path to the first problem.
    #[error("registration profiles invalid at {field}: {problem}")]
    Invalid { field: String, problem: String },
}

impl ProfilesError {
    /// The kind in `Retryable.<Kind>`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreadable(_) => "ProfilesUnreadable",
            Self::Invalid { .. } => "ProfilesInvalid",
        }
    }
}

impl fmt::Display for Profile {
    /// The effective profile, one setting per line (for `jitr profiles check` and `explain`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[String]| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(", ")
            }
        };
        writeln!(f, "  enabled          {}", self.enabled)?;
        writeln!(f, "  policies         {}", list(&self.policies))?;
        writeln!(
            f,
            "  thing type       {}",
            self.thing_type.as_deref().unwrap_or("-")
        )?;
        writeln!(f, "  thing groups     {}", list(&self.thing_groups))?;
        writeln!(f, "  thing name       {}", self.thing_name)?;
        match &self.attributes {
            None => writeln!(f, "  attributes       (built-in set)")?,
            Some(map) => {
                let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(f, "  attributes       {}", list(&pairs))?;
            }
        }
        let sources: Vec<String> = self.revocation.iter().map(ToString::to_string).collect();
        writeln!(f, "  revocation       {}", list(&sources))?;
        writeln!(
            f,
            "  fail open        {}",
            if self.revocation_fail_open {
                "yes"
            } else {
                "no"
            }
        )?;
        write!(f, "  thing binding    {}", self.thing_binding.as_str())
    }
}
