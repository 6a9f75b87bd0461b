//! Which CA a Thing belongs to, so a certificate from one CA can never take over a device admitted
//! through another (invariant 3: a certificate is never attached to a Thing bound to another CA).
//!
//! A Thing is bound by the attribute [`BINDING_ATTRIBUTE`], written when registration creates it
//! (or adopts it). An existing Thing without the attribute (pre-created by an operator, or made by
//! an older version) is judged by the certificates attached to it: adopted when none of them comes
//! from another CA, refused otherwise. The rule is pure; the registration function applies it.

use std::str::FromStr;

use crate::reasons::RejectReason;
use crate::registry::{CertificateStatus, ThingDescription};

/// The Thing attribute naming the CA certificate id the Thing is bound to.
pub const BINDING_ATTRIBUTE: &str = "caCertificateId";

/// What to do with an existing Thing that carries no binding (a profile's `thingBinding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindingRule {
    /// Adopt it when no certificate of another CA is attached to it (the default).
    #[default]
    AdoptUnbound,
    /// Refuse it: only Things this function created, or an operator bound, are used.
    Strict,
}

impl BindingRule {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdoptUnbound => "adopt-unbound",
            Self::Strict => "strict",
        }
    }
}

impl FromStr for BindingRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "adopt-unbound" => Ok(Self::AdoptUnbound),
            "strict" => Ok(Self::Strict),
            other => Err(format!("expected adopt-unbound or strict, got {other:?}")),
        }
    }
}

/// A principal attached to the Thing, as far as the binding cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachedPrincipal {
    /// An X.509 certificate with its CA (`None`: registered without a CA) and status.
    Certificate {
        certificate_id: String,
        ca_certificate_id: Option<String>,
        status: CertificateStatus,
    },
    /// Not a certificate (a Cognito identity, say): it names no CA and is not a device identity.
    Other,
}

/// The verdict on an existing Thing for a certificate of CA `ca_certificate_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Bound to this CA already.
    Bound,
    /// Unbound and free of other CAs' certificates: write the binding, then use it.
    Adopt,
    /// Bound to, or holding a certificate of, another CA.
    BoundToOtherCa,
    /// Unbound, and the rule is `strict`.
    Unbound,
}

impl Binding {
    /// Why a certificate is refused under this verdict, if it is.
    pub fn refusal(self) -> Option<RejectReason> {
        match self {
            Self::BoundToOtherCa => Some(RejectReason::ThingBoundToOtherCa),
            Self::Unbound => Some(RejectReason::ThingUnbound),
            Self::Bound | Self::Adopt => None,
        }
    }
}

/// Judges `thing` for a certificate of `ca_certificate_id`. `principals` is consulted only when
/// the Thing carries no binding attribute; the certificate being admitted may be among them.
pub fn bind(
    ca_certificate_id: &str,
    thing: &ThingDescription,
    principals: &[AttachedPrincipal],
    rule: BindingRule,
) -> Binding {
    match thing.attributes.get(BINDING_ATTRIBUTE) {
        Some(bound) if bound == ca_certificate_id => return Binding::Bound,
        Some(_) => return Binding::BoundToOtherCa,
        None => {}
    }
    // Any certificate of another CA, whatever its status: an INACTIVE one can be re-activated
    // by an operator, and then two CAs would share the device.
    let foreign = principals.iter().any(|p| match p {
        AttachedPrincipal::Certificate {
            ca_certificate_id: ca,
            ..
        } => ca.as_deref() != Some(ca_certificate_id),
        AttachedPrincipal::Other => false,
    });
    if foreign {
        return Binding::BoundToOtherCa;
    }
    match rule {
        BindingRule::AdoptUnbound => Binding::Adopt,
        BindingRule::Strict => Binding::Unbound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn thing(bound_to: Option<&str>) -> ThingDescription {
        let mut t = ThingDescription {
            name: "sensor-1".into(),
            ..ThingDescription::default()
        };
        if let Some(ca) = bound_to {
            t.attributes.insert(BINDING_ATTRIBUTE.into(), ca.to_owned());
        }
        t
    }

    fn cert(ca: Option<&str>, status: CertificateStatus) -> AttachedPrincipal {
        AttachedPrincipal::Certificate {
            certificate_id: "c".repeat(64),
            ca_certificate_id: ca.map(str::to_owned),
            status,
        }
    }

    /// (name, the Thing's binding, its certificates, rule, verdict)
    type Case = (
        &'static str,
        Option<&'static str>,
        Vec<AttachedPrincipal>,
        BindingRule,
        Binding,
    );

    #[test]
    fn binding_table() {
        use BindingRule::{AdoptUnbound, Strict};
        use CertificateStatus::{Active, Inactive, Revoked};
        let cases: Vec<Case> = vec![
            ("bound to us", Some(A), vec![], Strict, Binding::Bound),
            (
                "bound to us; the attribute wins over attachments",
                Some(A),
                vec![cert(Some(B), Active)],
                AdoptUnbound,
                Binding::Bound,
            ),
            (
                "bound to another CA",
                Some(B),
                vec![],
                AdoptUnbound,
                Binding::BoundToOtherCa,
            ),
            ("unbound, empty", None, vec![], AdoptUnbound, Binding::Adopt),
            (
                "unbound, empty, strict",
                None,
                vec![],
                Strict,
                Binding::Unbound,
            ),
            (
                "unbound, our CA's certificates only",
                None,
                vec![cert(Some(A), Active), cert(Some(A), Revoked)],
                AdoptUnbound,
                Binding::Adopt,
            ),
            (
                "unbound, another CA's ACTIVE certificate",
                None,
                vec![cert(Some(A), Active), cert(Some(B), Active)],
                AdoptUnbound,
                Binding::BoundToOtherCa,
            ),
            (
                "unbound, another CA's INACTIVE certificate",
                None,
                vec![cert(Some(B), Inactive)],
                AdoptUnbound,
                Binding::BoundToOtherCa,
            ),
            (
                "unbound, a certificate registered without a CA",
                None,
                vec![cert(None, Active)],
                AdoptUnbound,
                Binding::BoundToOtherCa,
            ),
            (
                "unbound, a non-certificate principal",
                None,
                vec![AttachedPrincipal::Other],
                AdoptUnbound,
                Binding::Adopt,
            ),
        ];
        for (name, bound_to, principals, rule, expected) in cases {
            assert_eq!(
                bind(A, &thing(bound_to), &principals, rule),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn rule_spellings_round_trip() {
        for rule in [BindingRule::AdoptUnbound, BindingRule::Strict] {
            assert_eq!(rule.as_str().parse::<BindingRule>(), Ok(rule));
        }
        assert!("adopt".parse::<BindingRule>().is_err());
    }

    #[test]
    fn only_a_thing_bound_elsewhere_or_unbound_under_strict_is_refused() {
        assert_eq!(
            Binding::BoundToOtherCa.refusal(),
            Some(RejectReason::ThingBoundToOtherCa)
        );
        assert_eq!(Binding::Unbound.refusal(), Some(RejectReason::ThingUnbound));
        assert_eq!(Binding::Bound.refusal(), None);
        assert_eq!(Binding::Adopt.refusal(), None);
    }
}
