//! What `jitr doctor` concludes from what it read: one line per check, ok or a problem with its
//! fix. Pure: the facts come from `aws.rs` (or a test), so every rule has a table test here.

use std::collections::BTreeMap;

/// Everything the doctor read about one deployed stack. A read that failed carries its error,
/// and is itself a problem (the operator cannot see it either).
#[derive(Debug, Clone)]
pub struct Facts {
    pub stack: String,
    pub stack_status: String,
    pub parameters: BTreeMap<String, String>,
    pub cas: Vec<CaFacts>,
    /// Set when no CA is named by the configuration and listing the registered ones failed.
    pub ca_listing_error: Option<String>,
    /// Event type → enabled.
    pub event_configurations: Result<BTreeMap<String, bool>, String>,
    pub rule: Result<RuleFacts, String>,
    /// What the rule must target: the live alias' ARN, or the burst queue's URL.
    pub expected_rule_target: String,
    /// IoT policy name → exists (or the read's error).
    pub policies: Vec<(String, Result<bool, String>)>,
    /// Thing type name → its searchable attributes (None: it does not exist).
    pub thing_types: Vec<(String, ThingTypeRead)>,
    pub ledger: Result<LedgerFacts, String>,
    /// None when the stack names no profiles document.
    pub profiles: Option<Result<usize, String>>,
    pub revocation: Vec<RevocationFacts>,
    /// The webhook key's length in characters (its value is never kept).
    pub webhook_secret: Result<usize, String>,
    /// (confirmed, pending) subscriptions of the alarm topic.
    pub alarm_topic: Result<(u64, u64), String>,
    /// Queue name → messages waiting.
    pub dead_letters: Vec<(String, Result<u64, String>)>,
}

/// A thing type's searchable attributes; None when it does not exist.
pub type ThingTypeRead = Result<Option<Vec<String>>, String>;

#[derive(Debug, Clone)]
pub struct CaFacts {
    pub id: String,
    /// Where the configuration names it (a profile, AllowedCaCertificateIds, "registered").
    pub named_by: String,
    pub state: Result<Option<CaState>, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaState {
    pub active: bool,
    pub auto_registration: bool,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFacts {
    pub name: String,
    pub disabled: bool,
    /// Lambda function ARNs and SQS queue URLs of its actions.
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerFacts {
    pub name: String,
    pub status: String,
    /// The TTL attribute when TTL is ENABLED (or ENABLING).
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RevocationFacts {
    pub ca: String,
    pub source: String,
    /// A summary of the verified list (entries, next update), or why it cannot be used.
    pub verified: Result<String, String>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub ok: bool,
    pub what: String,
    /// The fix, on a problem.
    pub fix: Option<String>,
}

fn ok(what: impl Into<String>) -> Line {
    Line {
        ok: true,
        what: what.into(),
        fix: None,
    }
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Line {
    Line {
        ok: false,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// The TTL attribute the ledger's history entries carry (template.yaml, ledger/dynamodb.rs).
pub const LEDGER_TTL_ATTRIBUTE: &str = "expiresAt";

/// Every check, in the order an operator would fix things.
pub fn judge(facts: &Facts, now: i64) -> Vec<Line> {
    let mut lines = Vec::new();
    let stack = &facts.stack;
    if facts.stack_status.ends_with("_COMPLETE") && !facts.stack_status.contains("ROLLBACK") {
        lines.push(ok(format!("stack {stack}: {}", facts.stack_status)));
    } else {
        lines.push(problem(
            format!("stack {stack}: {}", facts.stack_status),
            "see the stack's events (aws cloudformation describe-stack-events) and deploy again",
        ));
    }
    lines.extend(cas(facts, now));
    lines.push(event_configurations(&facts.event_configurations));
    lines.push(rule(&facts.rule, &facts.expected_rule_target));
    for (name, exists) in &facts.policies {
        lines.push(match exists {
            Ok(true) => ok(format!("device policy {name} exists")),
            Ok(false) => problem(
                format!("device policy {name} does not exist"),
                "create it (policies/device-policy.json is the template's) or correct the profile's policies",
            ),
            Err(e) => problem(format!("device policy {name}: {e}"), READ_FIX),
        });
    }
    let device_id_attribute = facts
        .parameters
        .get("DeviceIdAttribute")
        .filter(|a| !a.is_empty());
    for (name, described) in &facts.thing_types {
        lines.push(thing_type(name, described, device_id_attribute));
    }
    lines.push(ledger(&facts.ledger));
    if let Some(profiles) = &facts.profiles {
        lines.push(match profiles {
            Ok(n) => ok(format!("profiles document valid: {n} CA profile(s)")),
            Err(e) => problem(
                format!("profiles document: {e}"),
                "fix it and check it with `jitr profiles check FILE` before uploading",
            ),
        });
    }
    for list in &facts.revocation {
        lines.push(match &list.verified {
            Ok(summary) => ok(format!(
                "revocation list {} of CA {}: {summary}",
                list.source, list.ca
            )),
            Err(e) => problem(
                format!("revocation list {} of CA {}: {e}", list.source, list.ca),
                "publish a current CRL signed by that CA there (registration fails closed meanwhile)",
            ),
        });
    }
    lines.push(match &facts.webhook_secret {
        Ok(n) if *n >= 16 => ok(format!("webhook secret readable ({n} characters)")),
        Ok(n) => problem(
            format!("webhook secret has {n} characters"),
            "set it to Mender's secret of at least 16 characters (the function refuses shorter)",
        ),
        Err(e) => problem(format!("webhook secret: {e}"), READ_FIX),
    });
    lines.push(match &facts.alarm_topic {
        Ok((confirmed, _)) if *confirmed > 0 => ok(format!(
            "alarm topic has {confirmed} confirmed subscription(s)"
        )),
        Ok((_, pending)) => problem(
            format!("alarm topic has no confirmed subscription ({pending} pending)"),
            "subscribe someone (AlarmEmail, or aws sns subscribe) and confirm it: alarms reach no one",
        ),
        Err(e) => problem(format!("alarm topic: {e}"), READ_FIX),
    });
    for (queue, depth) in &facts.dead_letters {
        lines.push(match depth {
            Ok(0) => ok(format!("dead-letter queue {queue} empty")),
            Ok(n) => problem(
                format!("dead-letter queue {queue} holds {n} message(s)"),
                "read them (aws sqs receive-message), fix the cause, then purge or redrive",
            ),
            Err(e) => problem(format!("dead-letter queue {queue}: {e}"), READ_FIX),
        });
    }
    lines
}

const READ_FIX: &str = "check the credentials' permissions and region";

fn cas(facts: &Facts, now: i64) -> Vec<Line> {
    if let Some(e) = &facts.ca_listing_error {
        return vec![problem(format!("device CAs: {e}"), READ_FIX)];
    }
    if facts.cas.is_empty() {
        return vec![problem(
            "no device CA registered",
            "register yours: jitr ca register --ca-cert CA.pem --ca-key CA.key",
        )];
    }
    facts
        .cas
        .iter()
        .map(|ca| {
            let what = format!("CA {} ({})", ca.id, ca.named_by);
            match &ca.state {
                Err(e) => problem(format!("{what}: {e}"), READ_FIX),
                Ok(None) => problem(
                    format!("{what} is not registered"),
                    "jitr ca register --ca-cert CA.pem --ca-key CA.key",
                ),
                Ok(Some(state)) => {
                    let mut wrong = Vec::new();
                    if !state.active {
                        wrong.push("INACTIVE");
                    }
                    if !state.auto_registration {
                        wrong.push("auto-registration off");
                    }
                    if now < state.not_before {
                        wrong.push("not yet valid");
                    }
                    if now > state.not_after {
                        wrong.push("expired");
                    }
                    if wrong.is_empty() {
                        let days = (state.not_after - now) / 86_400;
                        ok(format!(
                            "{what}: ACTIVE, auto-registration on, valid {days} more days"
                        ))
                    } else {
                        problem(
                            format!("{what}: {}", wrong.join(", ")),
                            format!(
                                "aws iot update-ca-certificate --certificate-id {} --new-status ACTIVE --new-auto-registration-status ENABLE (an expired CA needs a new one: jitr ca register)",
                                ca.id
                            ),
                        )
                    }
                }
            }
        })
        .collect()
}

/// JITR's `$aws/events/certificates/registered/<caId>` message depends on the CA's
/// auto-registration, not on the registry event configurations (AWS IoT developer guide,
/// auto-register-device-cert.html, names only auto-registration and the device presenting its
/// certificate with the CA's). What is on is shown, for the record.
fn event_configurations(configurations: &Result<BTreeMap<String, bool>, String>) -> Line {
    match configurations {
        Ok(map) => {
            let on: Vec<&str> = map
                .iter()
                .filter(|(_, on)| **on)
                .map(|(t, _)| t.as_str())
                .collect();
            ok(format!(
                "event configurations: {} (JITR needs none of them: its event follows each CA's auto-registration)",
                if on.is_empty() {
                    "none enabled".to_owned()
                } else {
                    format!("enabled {}", on.join(", "))
                }
            ))
        }
        Err(e) => problem(format!("event configurations: {e}"), READ_FIX),
    }
}

fn rule(rule: &Result<RuleFacts, String>, expected: &str) -> Line {
    match rule {
        Err(e) => problem(format!("topic rule: {e}"), READ_FIX),
        Ok(rule) if rule.disabled => problem(
            format!(
                "topic rule {} is disabled: no registration event reaches the function",
                rule.name
            ),
            format!("aws iot enable-topic-rule --rule-name {}", rule.name),
        ),
        Ok(rule) if !rule.targets.iter().any(|t| t == expected) => problem(
            format!(
                "topic rule {} targets {:?}, not {expected}",
                rule.name, rule.targets
            ),
            "deploy the stack again (the rule must invoke the live alias, or the burst queue)",
        ),
        Ok(rule) => ok(format!(
            "topic rule {} enabled, targets {expected}",
            rule.name
        )),
    }
}

fn thing_type(name: &str, described: &ThingTypeRead, device_id_attribute: Option<&String>) -> Line {
    match described {
        Err(e) => problem(format!("thing type {name}: {e}"), READ_FIX),
        Ok(None) => problem(
            format!("thing type {name} does not exist"),
            format!("aws iot create-thing-type --thing-type-name {name}"),
        ),
        Ok(Some(searchable)) => match device_id_attribute {
            // ListThings by attribute finds only a typed Thing's searchable attributes.
            Some(attribute) if !searchable.contains(attribute) => problem(
                format!(
                    "thing type {name}: DeviceIdAttribute {attribute} is not one of its searchable attributes {searchable:?}, so webhooks cannot find its Things"
                ),
                format!(
                    "a thing type's searchable attributes are fixed at creation: create one with {attribute} among them (at most 3) and use it"
                ),
            ),
            _ => ok(format!("thing type {name} exists")),
        },
    }
}

fn ledger(ledger: &Result<LedgerFacts, String>) -> Line {
    match ledger {
        Err(e) => problem(format!("device ledger: {e}"), READ_FIX),
        Ok(l) if l.status != "ACTIVE" => problem(
            format!("device ledger {}: {}", l.name, l.status),
            "wait for it to become ACTIVE, or see its CloudFormation events",
        ),
        Ok(l) if l.ttl_attribute.as_deref() != Some(LEDGER_TTL_ATTRIBUTE) => problem(
            format!(
                "device ledger {}: TTL {} (history would never expire)",
                l.name,
                l.ttl_attribute.as_deref().unwrap_or("off")
            ),
            format!(
                "aws dynamodb update-time-to-live --table-name {} --time-to-live-specification Enabled=true,AttributeName={LEDGER_TTL_ATTRIBUTE}",
                l.name
            ),
        ),
        Ok(l) => ok(format!(
            "device ledger {}: ACTIVE, TTL on {LEDGER_TTL_ATTRIBUTE}",
            l.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const LIVE: &str = "arn:aws:lambda:eu-west-1:123456789012:function:s-registration:live";

    fn healthy() -> Facts {
        Facts {
            stack: "s".into(),
            stack_status: "CREATE_COMPLETE".into(),
            parameters: BTreeMap::from([("DeviceIdAttribute".into(), "menderId".into())]),
            cas: vec![CaFacts {
                id: "ca1".into(),
                named_by: "profile".into(),
                state: Ok(Some(CaState {
                    active: true,
                    auto_registration: true,
                    not_before: NOW - 10,
                    not_after: NOW + 86_400 * 30,
                })),
            }],
            ca_listing_error: None,
            event_configurations: Ok(BTreeMap::from([("THING".into(), true)])),
            rule: Ok(RuleFacts {
                name: "rule".into(),
                disabled: false,
                targets: vec![LIVE.into()],
            }),
            expected_rule_target: LIVE.into(),
            policies: vec![("jitr-device".into(), Ok(true))],
            thing_types: vec![("sensor".into(), Ok(Some(vec!["menderId".into()])))],
            ledger: Ok(LedgerFacts {
                name: "ledger".into(),
                status: "ACTIVE".into(),
                ttl_attribute: Some(LEDGER_TTL_ATTRIBUTE.into()),
            }),
            profiles: Some(Ok(1)),
            revocation: vec![RevocationFacts {
                ca: "ca1".into(),
                source: "s3://b/crl/ca1.crl".into(),
                verified: Ok("2 entries".into()),
            }],
            webhook_secret: Ok(48),
            alarm_topic: Ok((1, 0)),
            dead_letters: vec![("dlq".into(), Ok(0))],
        }
    }

    fn problems(facts: &Facts) -> Vec<String> {
        judge(facts, NOW)
            .into_iter()
            .filter(|l| !l.ok)
            .map(|l| l.what)
            .collect()
    }

    #[test]
    fn a_healthy_stack_has_no_problem_and_a_line_per_check() {
        let lines = judge(&healthy(), NOW);
        assert!(lines.iter().all(|l| l.ok), "{lines:#?}");
        assert_eq!(lines.len(), 12, "{lines:#?}");
    }

    #[test]
    fn each_fault_is_one_problem_with_a_fix() {
        type Plant = fn(&mut Facts);
        let cases: [(&str, Plant); 17] = [
            ("ROLLBACK_COMPLETE", |f| {
                f.stack_status = "UPDATE_ROLLBACK_COMPLETE".into()
            }),
            ("INACTIVE", |f| {
                f.cas[0].state = Ok(Some(CaState {
                    active: false,
                    ..ca_state(f)
                }))
            }),
            ("auto-registration off", |f| {
                f.cas[0].state = Ok(Some(CaState {
                    auto_registration: false,
                    ..ca_state(f)
                }))
            }),
            ("expired", |f| {
                f.cas[0].state = Ok(Some(CaState {
                    not_after: NOW - 1,
                    ..ca_state(f)
                }))
            }),
            ("is not registered", |f| f.cas[0].state = Ok(None)),
            ("no device CA registered", |f| f.cas.clear()),
            ("is disabled", |f| {
                if let Ok(r) = &mut f.rule {
                    r.disabled = true;
                }
            }),
            ("targets", |f| {
                if let Ok(r) = &mut f.rule {
                    r.targets = vec![format!("{LIVE}x")];
                }
            }),
            ("does not exist", |f| f.policies[0].1 = Ok(false)),
            ("not one of its searchable attributes", |f| {
                f.thing_types[0].1 = Ok(Some(vec!["other".into()]))
            }),
            ("TTL off", |f| {
                if let Ok(l) = &mut f.ledger {
                    l.ttl_attribute = None;
                }
            }),
            ("profiles document", |f| {
                f.profiles = Some(Err("bad".into()))
            }),
            ("revocation list", |f| {
                f.revocation[0].verified = Err("expired".into())
            }),
            ("has 8 characters", |f| f.webhook_secret = Ok(8)),
            ("no confirmed subscription", |f| f.alarm_topic = Ok((0, 1))),
            ("holds 3 message(s)", |f| f.dead_letters[0].1 = Ok(3)),
            ("event configurations", |f| {
                f.event_configurations = Err("denied".into())
            }),
        ];
        for (expected, plant) in cases {
            let mut facts = healthy();
            plant(&mut facts);
            let found = problems(&facts);
            assert_eq!(found.len(), 1, "{expected}: {found:?}");
            assert!(found[0].contains(expected), "{expected}: {found:?}");
            let lines = judge(&facts, NOW);
            assert!(lines.iter().filter(|l| !l.ok).all(|l| l.fix.is_some()));
        }
    }

    fn ca_state(f: &Facts) -> CaState {
        f.cas[0].state.clone().unwrap().unwrap()
    }

    #[test]
    fn without_a_device_id_attribute_any_thing_type_will_do() {
        let mut facts = healthy();
        facts.parameters.clear();
        facts.thing_types[0].1 = Ok(Some(vec![]));
        assert!(problems(&facts).is_empty());
    }
}
