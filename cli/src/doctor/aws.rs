//! The doctor's reads: one deployed stack's resources and parameters (CloudFormation), then
//! IoT, DynamoDB, S3, Secrets Manager, SNS and SQS, each answer kept as a fact or its error.
//! The only place the doctor touches SDK types. Reads only: nothing here writes anything.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use jitr_aws::IotRegistry;
use jitr_aws::SourceFetcher;
use jitr_aws::sdk_error::describe;
use jitr_domain::Config;
use jitr_domain::certificate::CaCertificate;
use jitr_domain::profiles::parse_document;
use jitr_domain::registry::Registry;
use jitr_domain::revocation::{RevocationList, RevocationSource};
use jitr_domain::source::{AddressPolicy, Fetched, Fetcher, ObjectSource};

use super::checks::{CaFacts, CaState, Facts, LedgerFacts, RevocationFacts, RuleFacts};

/// One CA's description, with its PEM for verifying its lists.
struct DescribedCa {
    state: CaState,
    pem: String,
}

pub async fn gather(sdk: &SdkConfig, stack: &str, now: i64) -> Result<Facts, String> {
    let cloudformation = aws_sdk_cloudformation::Client::new(sdk);
    let described = cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| format!("stack {stack}: {}", describe("DescribeStacks", &e)))?;
    let found = described
        .stacks()
        .first()
        .ok_or_else(|| format!("stack {stack}: not found"))?;
    let parameters: BTreeMap<String, String> = found
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_owned(),
                p.parameter_value()?.to_owned(),
            ))
        })
        .collect();
    let outputs: BTreeMap<String, String> = found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    let resources = stack_resources(&cloudformation, stack).await?;
    let parameter = |name: &str| parameters.get(name).filter(|v| !v.is_empty()).cloned();
    let resource = |name: &str| {
        resources
            .get(name)
            .cloned()
            .ok_or_else(|| format!("the stack has no {name}"))
    };

    let iot = aws_sdk_iot::Client::new(sdk);
    // The registry port's reads where they say what the doctor needs (listing CAs, a policy's
    // existence); the raw client for what the port does not carry (auto-registration, rules).
    let registry = IotRegistry::new(iot.clone());
    let fetcher = SourceFetcher::from_sdk_config(sdk, AddressPolicy::PublicOnly);
    let policy_name = parameter("DevicePolicyName").unwrap_or_else(|| "jitr-device".to_owned());
    let default_profile = Config::with_policy(&policy_name).default_profile();

    // The profiles document, when the stack names one: its CAs, policies, types and lists.
    let profiles_source = parameter("RegistrationProfilesBucket").map(|bucket| ObjectSource::S3 {
        bucket,
        key: parameter("RegistrationProfilesKey").unwrap_or_else(|| "profiles.json".to_owned()),
    });
    let profiles = match &profiles_source {
        None => None,
        Some(source) => Some(match fetch(&fetcher, source).await {
            Ok(bytes) => {
                parse_document(&bytes, &default_profile).map_err(|e| format!("{source}: {e}"))
            }
            Err(e) => Err(e),
        }),
    };

    // The CAs: those with a profile, those allowed by the parameter; else every registered one.
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    if let Some(Ok(profiles)) = &profiles {
        for id in profiles.by_ca.keys() {
            named.insert(id.clone(), "has a profile".to_owned());
        }
    }
    for id in parameter("AllowedCaCertificateIds")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        named
            .entry(id.to_owned())
            .or_insert_with(|| "AllowedCaCertificateIds".to_owned());
    }
    let mut ca_listing_error = None;
    if named.is_empty() {
        match registry.list_ca_certificates().await {
            Ok(ids) => named.extend(ids.into_iter().map(|id| (id, "registered".to_owned()))),
            Err(e) => ca_listing_error = Some(e.to_string()),
        }
    }
    let mut cas = Vec::new();
    let mut pems = BTreeMap::new();
    for (id, named_by) in &named {
        let state = match describe_ca(&iot, id).await {
            Ok(Some(ca)) => {
                pems.insert(id.clone(), ca.pem);
                Ok(Some(ca.state))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        cas.push(CaFacts {
            id: id.clone(),
            named_by: named_by.clone(),
            state,
        });
    }

    let event_configurations = iot
        .describe_event_configurations()
        .send()
        .await
        .map(|out| {
            out.event_configurations()
                .map(|m| {
                    m.iter()
                        .map(|(kind, c)| (kind.as_str().to_owned(), c.enabled()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .map_err(|e| describe("DescribeEventConfigurations", &e));

    let rule = match resource("CertificateRegisteredRule") {
        Ok(name) => topic_rule(&iot, &name).await,
        Err(e) => Err(e),
    };
    let expected_rule_target = if parameter("UseBurstBuffer").as_deref() == Some("true") {
        resource("RegistrationBurstQueue").unwrap_or_default()
    } else {
        outputs
            .get("RegistrationFunctionArn")
            .cloned()
            .unwrap_or_default()
    };

    // Policies and thing types: the default profile's and every profile's.
    let mut policy_names = BTreeSet::from([policy_name.clone()]);
    let mut type_names: BTreeSet<String> = parameter("ThingTypeName").into_iter().collect();
    let mut lists: Vec<(String, ObjectSource)> = Vec::new();
    if let Some(Ok(profiles)) = &profiles {
        for (ca, profile) in &profiles.by_ca {
            policy_names.extend(profile.policies.iter().cloned());
            type_names.extend(profile.thing_type.iter().cloned());
            for source in &profile.revocation {
                if let RevocationSource::Object(object) = source {
                    lists.push((ca.clone(), object.clone()));
                }
            }
        }
    }
    if let (Some(bucket), Some(key)) = (
        parameter("RevocationListBucket"),
        parameter("RevocationListKey"),
    ) {
        // The default list belongs to whichever checked CA signed it.
        lists.push((String::new(), ObjectSource::S3 { bucket, key }));
    }
    let mut policies = Vec::new();
    for name in policy_names {
        let exists = registry
            .policy_exists(&name)
            .await
            .map_err(|e| e.to_string());
        policies.push((name, exists));
    }
    let mut thing_types = Vec::new();
    for name in type_names {
        let described = iot
            .describe_thing_type()
            .thing_type_name(&name)
            .send()
            .await;
        thing_types.push((
            name,
            match described {
                Ok(out) => Ok(Some(
                    out.thing_type_properties()
                        .map(|p| p.searchable_attributes().to_vec())
                        .unwrap_or_default(),
                )),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(describe("DescribeThingType", &e)),
            },
        ));
    }

    let mut revocation = Vec::new();
    for (ca, source) in lists {
        let (ca, verified) = verify_list(&fetcher, &source, &ca, &pems, now).await;
        revocation.push(RevocationFacts {
            ca,
            source: source.to_string(),
            verified,
        });
    }

    let ledger = match resource("DeviceLedgerTable") {
        Ok(table) => ledger(sdk, &table).await,
        Err(e) => Err(e),
    };
    let webhook_secret = match resource("WebhookSecret") {
        Ok(arn) => aws_sdk_secretsmanager::Client::new(sdk)
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map(|out| out.secret_string().map_or(0, |s| s.chars().count()))
            .map_err(|e| describe("GetSecretValue", &e)),
        Err(e) => Err(e),
    };
    let alarm_topic = match resource("AlarmTopic") {
        Ok(arn) => subscriptions(sdk, &arn).await,
        Err(e) => Err(e),
    };
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut dead_letters = Vec::new();
    for logical in ["RegistrationDeadLetterQueue", "LifecycleDeadLetterQueue"] {
        let depth = match resource(logical) {
            Ok(url) => queue_depth(&sqs, &url).await,
            Err(e) => Err(e),
        };
        dead_letters.push((logical.to_owned(), depth));
    }

    Ok(Facts {
        stack: stack.to_owned(),
        stack_status: found
            .stack_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        parameters,
        cas,
        ca_listing_error,
        event_configurations,
        rule,
        expected_rule_target,
        policies,
        thing_types,
        ledger,
        profiles: profiles.map(|p| p.map(|p| p.by_ca.len())),
        revocation,
        webhook_secret,
        alarm_topic,
        dead_letters,
    })
}

async fn stack_resources(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<BTreeMap<String, String>, String> {
    let summaries = cloudformation
        .list_stack_resources()
        .stack_name(stack)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| format!("stack {stack}: {}", describe("ListStackResources", &e)))?;
    Ok(summaries
        .iter()
        .filter_map(|s| {
            Some((
                s.logical_resource_id()?.to_owned(),
                s.physical_resource_id()?.to_owned(),
            ))
        })
        .collect())
}

async fn describe_ca(iot: &aws_sdk_iot::Client, id: &str) -> Result<Option<DescribedCa>, String> {
    let out = match iot
        .describe_ca_certificate()
        .certificate_id(id)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(describe("DescribeCACertificate", &e)),
    };
    let Some(description) = out.certificate_description() else {
        return Ok(None);
    };
    let pem = description.certificate_pem().unwrap_or_default().to_owned();
    // The certificate's own validity; IoT's copy of it when the PEM cannot be read.
    let from_pem = CaCertificate::from_pem(&pem).and_then(|ca| {
        let parsed = ca.parsed()?;
        let validity = parsed.validity();
        Some((
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        ))
    });
    let validity = description.validity();
    let (not_before, not_after) = from_pem.unwrap_or((
        validity
            .and_then(|v| v.not_before())
            .map_or(0, |t| t.secs()),
        validity.and_then(|v| v.not_after()).map_or(0, |t| t.secs()),
    ));
    Ok(Some(DescribedCa {
        state: CaState {
            active: description.status().is_some_and(|s| s.as_str() == "ACTIVE"),
            auto_registration: description
                .auto_registration_status()
                .is_some_and(|s| s.as_str() == "ENABLE"),
            not_before,
            not_after,
        },
        pem,
    }))
}

async fn topic_rule(iot: &aws_sdk_iot::Client, name: &str) -> Result<RuleFacts, String> {
    let out = iot
        .get_topic_rule()
        .rule_name(name)
        .send()
        .await
        .map_err(|e| describe("GetTopicRule", &e))?;
    let rule = out
        .rule()
        .ok_or_else(|| format!("topic rule {name}: no definition"))?;
    let targets = rule
        .actions()
        .iter()
        .filter_map(|a| {
            a.lambda()
                .map(|l| l.function_arn().to_owned())
                .or_else(|| a.sqs().map(|q| q.queue_url().to_owned()))
        })
        .collect();
    Ok(RuleFacts {
        name: name.to_owned(),
        disabled: rule.rule_disabled().unwrap_or(false),
        targets,
    })
}

async fn ledger(sdk: &SdkConfig, table: &str) -> Result<LedgerFacts, String> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let described = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| format!("{table}: {}", describe("DescribeTable", &e)))?;
    let status = described
        .table()
        .and_then(|t| t.table_status())
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let ttl = dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| format!("{table}: {}", describe("DescribeTimeToLive", &e)))?;
    let ttl_attribute = ttl.time_to_live_description().and_then(|d| {
        let on = d
            .time_to_live_status()
            .is_some_and(|s| matches!(s.as_str(), "ENABLED" | "ENABLING"));
        on.then(|| d.attribute_name().unwrap_or_default().to_owned())
    });
    Ok(LedgerFacts {
        name: table.to_owned(),
        status,
        ttl_attribute,
    })
}

async fn subscriptions(sdk: &SdkConfig, topic: &str) -> Result<(u64, u64), String> {
    let out = aws_sdk_sns::Client::new(sdk)
        .get_topic_attributes()
        .topic_arn(topic)
        .send()
        .await
        .map_err(|e| describe("GetTopicAttributes", &e))?;
    let count = |name: &str| {
        out.attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        count("SubscriptionsConfirmed"),
        count("SubscriptionsPending"),
    ))
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| describe("GetQueueAttributes", &e))?;
    let count = |name: A| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible))
}

async fn fetch(fetcher: &SourceFetcher, source: &ObjectSource) -> Result<Vec<u8>, String> {
    match fetcher.fetch(source, None).await {
        Ok(Fetched::Body { bytes, .. }) => Ok(bytes),
        Ok(Fetched::NotModified) => Err(format!("{source}: not modified (asked unconditionally)")),
        Err(e) => Err(e.0),
    }
}

/// Fetches a list and verifies it under its CA (for the default list, `ca` is empty: under
/// whichever checked CA signed it), and that it is current.
async fn verify_list(
    fetcher: &SourceFetcher,
    source: &ObjectSource,
    ca: &str,
    pems: &BTreeMap<String, String>,
    now: i64,
) -> (String, Result<String, String>) {
    let bytes = match fetch(fetcher, source).await {
        Ok(bytes) => bytes,
        Err(e) => return (ca.to_owned(), Err(e)),
    };
    let candidates: Vec<(&String, &String)> = pems
        .iter()
        .filter(|(id, _)| ca.is_empty() || id.as_str() == ca)
        .collect();
    let mut last = format!("no PEM for CA {ca:?} (is it registered?)");
    for (id, pem) in candidates {
        let Some(issuer) = CaCertificate::from_pem(pem) else {
            last = format!("CA {id}: unreadable PEM");
            continue;
        };
        match RevocationList::parse(&bytes, &issuer) {
            Ok(list) => {
                let verdict = list.check_fresh(now).map(|()| {
                    format!(
                        "verified, {} entries, next update in {} h",
                        list.len(),
                        (list.next_update() - now) / 3600
                    )
                });
                return (id.clone(), verdict.map_err(|e| e.to_string()));
            }
            Err(e) => last = e.to_string(),
        }
    }
    (
        if ca.is_empty() { "default" } else { ca }.to_owned(),
        Err(last),
    )
}

fn is_not_found<E, R>(err: &aws_sdk_iot::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_iot::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ResourceNotFoundException"))
}
