//! Templates over a certificate's subject: `{CN}`, `acme-{serialNumber}`, `{certificateId}`.
//! Used for Thing names and for the attributes a profile copies from the subject.

use std::fmt;

use crate::certificate::Subject;

/// A value a template can take from the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    CommonName,
    SerialNumber,
    Organization,
    OrganizationalUnit,
    Country,
    /// IoT Core's certificate id (64 hex).
    CertificateId,
    /// The certificate's serial, hex.
    CertificateSerial,
}

impl Field {
    const ALL: [Field; 7] = [
        Field::CommonName,
        Field::SerialNumber,
        Field::Organization,
        Field::OrganizationalUnit,
        Field::Country,
        Field::CertificateId,
        Field::CertificateSerial,
    ];

    /// The placeholder's name inside braces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommonName => "CN",
            Self::SerialNumber => "serialNumber",
            Self::Organization => "O",
            Self::OrganizationalUnit => "OU",
            Self::Country => "C",
            Self::CertificateId => "certificateId",
            Self::CertificateSerial => "certificateSerial",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values a template is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct FieldValues<'a> {
    pub subject: &'a Subject,
    pub certificate_id: &'a str,
    pub certificate_serial_hex: &'a str,
}

impl FieldValues<'_> {
    fn get(&self, field: Field) -> Option<&str> {
        let s = self.subject;
        match field {
            Field::CommonName => s.common_name.as_deref(),
            Field::SerialNumber => s.serial_number.as_deref(),
            Field::Organization => s.organization.as_deref(),
            Field::OrganizationalUnit => s.organizational_unit.as_deref(),
            Field::Country => s.country.as_deref(),
            Field::CertificateId => Some(self.certificate_id),
            Field::CertificateSerial => Some(self.certificate_serial_hex),
        }
    }
}

impl Template {
    /// Parses `text`; every literal byte must satisfy `literal_ok` (the target's character set).
    pub fn parse(text: &str, literal_ok: fn(u8) -> bool) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("{text:?}: unclosed '{{'"))?;
                    let name = &rest[1..end];
                    let field = Field::parse(name).ok_or_else(|| {
                        let known: Vec<_> = Field::ALL.iter().map(|f| f.as_str()).collect();
                        format!(
                            "{text:?}: unknown placeholder {{{name}}} (known: {})",
                            known.join(", ")
                        )
                    })?;
                    parts.push(Part::Field(field));
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let literal = &rest[..end];
                    if let Some(bad) = literal.bytes().find(|b| !literal_ok(*b)) {
                        return Err(format!(
                            "{text:?}: the character {:?} is not allowed here",
                            char::from(bad)
                        ));
                    }
                    parts.push(Part::Literal(literal.to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        if parts.is_empty() {
            return Err("an empty template".into());
        }
        Ok(Self { parts })
    }

    /// A template of one field.
    pub fn field(field: Field) -> Self {
        Self {
            parts: vec![Part::Field(field)],
        }
    }

    /// The rendered text, or the first field the certificate lacks.
    pub fn render(&self, values: &FieldValues<'_>) -> Result<String, Field> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(field) => match values.get(*field) {
                    Some(value) if !value.is_empty() => out.push_str(value),
                    _ => return Err(*field),
                },
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(text)?,
                Part::Field(field) => write!(f, "{{{}}}", field.as_str())?,
            }
        }
        Ok(())
    }
}

/// Characters IoT Core allows in a Thing name.
pub fn thing_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-')
}

/// Characters IoT Core allows in an attribute value.
pub fn attribute_value_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.,@/:#=[]-".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_renders_and_prints_templates() {
        let subject = Subject {
            common_name: Some("sensor-1".into()),
            serial_number: Some("SN42".into()),
            ..Subject::default()
        };
        let values = FieldValues {
            subject: &subject,
            certificate_id: "abc",
            certificate_serial_hex: "0f",
        };
        let cases = [
            ("{CN}", Ok("sensor-1")),
            ("acme-{serialNumber}", Ok("acme-SN42")),
            ("{certificateId}", Ok("abc")),
            ("x:{CN}_{certificateSerial}", Ok("x:sensor-1_0f")),
            ("{O}-{CN}", Err(Field::Organization)),
        ];
        for (text, expected) in cases {
            let template = Template::parse(text, thing_name_char).unwrap();
            assert_eq!(template.to_string(), text);
            assert_eq!(
                template.render(&values),
                expected.map(str::to_owned),
                "{text}"
            );
        }
        for bad in ["", "{CN", "{cn}", "a b{CN}", "dev/{CN}", "{}", "{CN}.x"] {
            assert!(Template::parse(bad, thing_name_char).is_err(), "{bad}");
        }
        assert!(Template::parse("{CN}.x", attribute_value_char).is_ok());
    }
}
