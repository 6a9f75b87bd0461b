//! The ledger on DynamoDB (`DEVICE_LEDGER_TABLE`): one table, partition key `pk`, sort key `sk`,
//! both strings. A serial's entries share `pk = SERIAL#<caId>#<serialHex>`, one item per
//! certificate (`sk = CERT#<certificateId>`), so the sync finds them with one strongly
//! consistent Query, never a scan. A device's items share `pk = DEVICE#<device key>` (its Thing's
//! name, or `<attribute>=<id>`: `device::device_key`): its record (`sk = STATE`, read with one
//! strongly consistent GetItem) and its history
//! (`sk = HISTORY#<ms>#...`, expiring through the table's TTL attribute `expiresAt`).
//! DynamoDB types stay in this file.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::iot::classify;
use jitr_domain::ledger::device::{
    DeviceDecision, DeviceRecord, DeviceState, EventStamp, HistoryEntry, Holdings,
    LatestCertificate, Recorded, STATE_KEY, device_pk, judge,
};
use jitr_domain::ledger::{
    DEFAULT_HISTORY_DAYS, Ledger, LedgerError, LedgerSettings, Revoked, SerialEntry,
    certificate_key, serial_key,
};
use jitr_domain::registry::RegistryErrorKind;
use jitr_domain::revocation::mark::{ListMark, SyncProgress};

/// How often a decision is judged again when the record changed between write and read.
const RECORD_ATTEMPTS: usize = 3;

/// The ledger table through the AWS SDK.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    history_days: u32,
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            history_days: DEFAULT_HISTORY_DAYS,
        }
    }

    /// History entries expire `days` after they were written.
    #[must_use]
    pub fn with_history_days(mut self, days: u32) -> Self {
        self.history_days = days;
        self
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }

    /// The ledger the functions' configuration names (`DEVICE_LEDGER_*`).
    pub fn from_settings(sdk: &aws_config::SdkConfig, settings: &LedgerSettings) -> Self {
        Self::from_sdk_config(sdk, &settings.table).with_history_days(settings.history_days)
    }

    /// Creates the table as the template does (on demand; for tests and `jitr`).
    pub async fn create_table(&self) -> Result<(), LedgerError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
            Projection, ProjectionType, ScalarAttributeType,
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let built = (|| {
            let by_ca = GlobalSecondaryIndex::builder()
                .index_name(CA_INDEX)
                .key_schema(key("caCertificateId", KeyType::Hash)?)
                .key_schema(key("serialHex", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?;
            Ok::<_, aws_sdk_dynamodb::error::BuildError>((
                [
                    attribute("pk")?,
                    attribute("sk")?,
                    attribute("caCertificateId")?,
                    attribute("serialHex")?,
                ],
                key("pk", KeyType::Hash)?,
                key("sk", KeyType::Range)?,
                by_ca,
            ))
        })()
        .map_err(|e| LedgerError {
            kind: RegistryErrorKind::InvalidRequest,
            operation: "CreateTable",
            message: e.to_string(),
        })?;
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(built.0.to_vec()))
            .key_schema(built.1)
            .key_schema(built.2)
            .global_secondary_indexes(built.3)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match ledger_error(&self.table, "CreateTable", classify("CreateTable", e)) {
                err if err.message.contains("ResourceInUseException") => Ok(()),
                err => Err(err),
            },
        }
    }
}

/// A certificate's admission record: `pk = ADMITTED#<certificateId>`, `sk = CERT`, with
/// `admittedAt` (absent once the certificate was deleted) and the table's TTL, a day on.
fn admission_key(certificate_id: &str) -> String {
    format!("ADMITTED#{certificate_id}")
}

const ADMISSION_SORT_KEY: &str = "CERT";

/// How long an admission record is kept: duplicates come within minutes of the first event.
const ADMISSION_TTL_SECS: i64 = 86_400;

impl DynamoLedger {
    async fn put_admission(
        &self,
        certificate_id: &str,
        at: Option<i64>,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem";
        let now = crate::unix_now();
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(admission_key(certificate_id)))
            .item("sk", AttributeValue::S(ADMISSION_SORT_KEY.into()))
            .item(
                "expiresAt",
                AttributeValue::N((now + ADMISSION_TTL_SECS).to_string()),
            );
        if let Some(at) = at {
            request = request.item("admittedAt", AttributeValue::N(at.to_string()));
        }
        request
            .send()
            .await
            .map(drop)
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))
    }
}

/// The registry error's message without its own "<operation> failed:" (the LedgerError says
/// it once); a missing table is named, with the variable that named it.
fn ledger_error(
    table: &str,
    operation: &'static str,
    err: jitr_domain::registry::RegistryError,
) -> LedgerError {
    let message = if err.message().starts_with("ResourceNotFoundException") {
        format!(
            "table {table} not found (DEVICE_LEDGER_TABLE; create it or correct the name): {}",
            err.message()
        )
    } else {
        err.message().to_owned()
    };
    LedgerError {
        kind: err.kind(),
        operation,
        message,
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn string_set(item: &HashMap<String, AttributeValue>, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

fn device_record(item: &HashMap<String, AttributeValue>) -> DeviceRecord {
    let decision = (|| {
        Some(DeviceDecision {
            state: DeviceState::parse(&text(item, "deviceState")?)?,
            action: text(item, "lastAction")?,
            event: EventStamp {
                at_ms: number(item, "eventAt")?,
                id: text(item, "eventId")?,
            },
        })
    })();
    DeviceRecord {
        thing_name: text(item, "thingName").unwrap_or_default(),
        decision,
        applied_event_id: text(item, "appliedEventId"),
        applied_event_at: number(item, "appliedEventAt"),
        certificates: string_set(item, "certificates").into_iter().collect(),
        retired: string_set(item, "retired").into_iter().collect(),
        refused: string_set(item, "refused").into_iter().collect(),
        latest: text(item, "latestCertificate").and_then(|certificate_id| {
            Some(LatestCertificate {
                certificate_id,
                not_before: number(item, "latestNotBefore")?,
            })
        }),
    }
}

fn history_entry(item: &HashMap<String, AttributeValue>) -> Option<HistoryEntry> {
    Some(HistoryEntry {
        at_ms: number(item, "atMs")?,
        source: text(item, "source")?,
        what: text(item, "what")?,
        certificate_id: text(item, "certificateId"),
        reason: text(item, "reason"),
        event_id: text(item, "eventId"),
    })
}

/// A failed condition is `Conflict`; anything else is the error.
/// A serial-index item of the CA; `serial_hex` when the caller knows it (its partition key),
/// else the item's own `serialHex` (an index page).
fn serial_entry(
    item: &HashMap<String, AttributeValue>,
    ca_certificate_id: &str,
    serial_hex: Option<&str>,
) -> Option<SerialEntry> {
    Some(SerialEntry {
        ca_certificate_id: ca_certificate_id.to_owned(),
        serial_hex: match serial_hex {
            Some(serial) => serial.to_owned(),
            None => text(item, "serialHex")?,
        },
        certificate_id: text(item, "certificateId")?,
        thing_name: text(item, "thingName").unwrap_or_default(),
        admitted_at: number(item, "admittedAt").unwrap_or_default(),
        revoked: number(item, "revokedAt").map(|at| Revoked {
            at,
            by: text(item, "revokedBy").unwrap_or_default(),
        }),
    })
}

fn condition_failed(result: &Result<(), LedgerError>) -> bool {
    matches!(result, Err(e) if e.kind == RegistryErrorKind::Conflict)
}

impl Ledger for DynamoLedger {
    async fn index_certificate(&self, entry: &SerialEntry) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem";
        self.client
            .update_item()
            .table_name(&self.table)
            .key(
                "pk",
                AttributeValue::S(serial_key(&entry.ca_certificate_id, &entry.serial_hex)),
            )
            .key(
                "sk",
                AttributeValue::S(certificate_key(&entry.certificate_id)),
            )
            .update_expression(
                "SET caCertificateId = :ca, serialHex = :serial, certificateId = :cert, \
                 thingName = :thing, admittedAt = if_not_exists(admittedAt, :at)",
            )
            .expression_attribute_values(":ca", AttributeValue::S(entry.ca_certificate_id.clone()))
            .expression_attribute_values(":serial", AttributeValue::S(entry.serial_hex.clone()))
            .expression_attribute_values(":cert", AttributeValue::S(entry.certificate_id.clone()))
            .expression_attribute_values(":thing", AttributeValue::S(entry.thing_name.clone()))
            .expression_attribute_values(":at", AttributeValue::N(entry.admitted_at.to_string()))
            .send()
            .await
            .map(drop)
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))
    }

    async fn certificates_with_serial(
        &self,
        ca_certificate_id: &str,
        serial_hex: &str,
    ) -> Result<Vec<SerialEntry>, LedgerError> {
        const OP: &str = "Query";
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(serial_key(ca_certificate_id, serial_hex)),
            )
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))?;
        Ok(pages
            .iter()
            .filter_map(|item| serial_entry(item, ca_certificate_id, Some(serial_hex)))
            .collect())
    }

    async fn serial_index_page(
        &self,
        ca_certificate_id: &str,
        after: Option<&str>,
    ) -> Result<jitr_domain::ledger::IndexPage, LedgerError> {
        const OP: &str = "Query";
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CA_INDEX)
            .key_condition_expression("caCertificateId = :ca")
            .expression_attribute_values(":ca", AttributeValue::S(ca_certificate_id.into()))
            .limit(i32::try_from(jitr_domain::ledger::INDEX_PAGE_ENTRIES).unwrap_or(i32::MAX));
        if let Some((serial, certificate)) = after.and_then(|after| after.split_once('/')) {
            let key = HashMap::from([
                (
                    "pk".to_owned(),
                    AttributeValue::S(serial_key(ca_certificate_id, serial)),
                ),
                (
                    "sk".to_owned(),
                    AttributeValue::S(certificate_key(certificate)),
                ),
                (
                    "caCertificateId".to_owned(),
                    AttributeValue::S(ca_certificate_id.into()),
                ),
                ("serialHex".to_owned(), AttributeValue::S(serial.into())),
            ]);
            request = request.set_exclusive_start_key(Some(key));
        }
        let output = request
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))?;
        let entries: Vec<SerialEntry> = output
            .items()
            .iter()
            .filter_map(|item| serial_entry(item, ca_certificate_id, None))
            .collect();
        let after = output
            .last_evaluated_key()
            .and_then(|_| entries.last().map(jitr_domain::ledger::index_cursor));
        Ok(jitr_domain::ledger::IndexPage { entries, after })
    }

    async fn mark_revoked(
        &self,
        ca_certificate_id: &str,
        serial_hex: &str,
        certificate_id: &str,
        revoked: &Revoked,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                "pk",
                AttributeValue::S(serial_key(ca_certificate_id, serial_hex)),
            )
            .key("sk", AttributeValue::S(certificate_key(certificate_id)))
            .update_expression("SET revokedAt = :at, revokedBy = :by")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", AttributeValue::N(revoked.at.to_string()))
            .expression_attribute_values(":by", AttributeValue::S(revoked.by.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut err = ledger_error(&self.table, OP, classify(OP, e));
                // The condition failed: no such entry.
                if err.kind == RegistryErrorKind::Conflict {
                    err.kind = RegistryErrorKind::NotFound;
                }
                Err(err)
            }
        }
    }

    async fn device(&self, thing_name: &str) -> Result<Option<DeviceRecord>, LedgerError> {
        const OP: &str = "GetItem";
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key("pk", AttributeValue::S(device_pk(thing_name)))
            .key("sk", AttributeValue::S(STATE_KEY.into()))
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))?;
        Ok(output.item().map(device_record))
    }

    async fn record_decision(
        &self,
        thing_name: &str,
        decision: &DeviceDecision,
    ) -> Result<Recorded, LedgerError> {
        const OP: &str = "UpdateItem";
        for _ in 0..RECORD_ATTEMPTS {
            let written = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(device_pk(thing_name)))
                .key("sk", AttributeValue::S(STATE_KEY.into()))
                .update_expression(
                    "SET thingName = :thing, deviceState = :state, lastAction = :action, \
                     eventAt = :at, eventId = :id",
                )
                // The ordering rule, atomically: newer by time, then by id.
                .condition_expression(
                    "attribute_not_exists(eventAt) OR eventAt < :at \
                     OR (eventAt = :at AND eventId < :id)",
                )
                .expression_attribute_values(":thing", AttributeValue::S(thing_name.into()))
                .expression_attribute_values(
                    ":state",
                    AttributeValue::S(decision.state.as_str().into()),
                )
                .expression_attribute_values(":action", AttributeValue::S(decision.action.clone()))
                .expression_attribute_values(
                    ":at",
                    AttributeValue::N(decision.event.at_ms.to_string()),
                )
                .expression_attribute_values(":id", AttributeValue::S(decision.event.id.clone()))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match written {
                Ok(output) => {
                    let record = output.attributes().map(device_record).unwrap_or_default();
                    return Ok(Recorded::New(record));
                }
                Err(e) => {
                    let err = ledger_error(&self.table, OP, classify(OP, e));
                    if err.kind != RegistryErrorKind::Conflict {
                        return Err(err);
                    }
                }
            }
            // Refused: the recorded decision is as new or newer. Same event, or older?
            match judge(self.device(thing_name).await?.as_ref(), decision) {
                // Changed again between the write and the read: try the write again.
                Recorded::New(_) => continue,
                other => return Ok(other),
            }
        }
        Err(LedgerError {
            kind: RegistryErrorKind::Conflict,
            operation: OP,
            message: format!("device {thing_name} kept changing while recording a decision"),
        })
    }

    async fn mark_applied(&self, thing_name: &str, event: &EventStamp) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(device_pk(thing_name)))
            .key("sk", AttributeValue::S(STATE_KEY.into()))
            .update_expression("SET appliedEventId = :id, appliedEventAt = :at")
            .condition_expression("eventId = :id AND eventAt = :at")
            .expression_attribute_values(":id", AttributeValue::S(event.id.clone()))
            .expression_attribute_values(":at", AttributeValue::N(event.at_ms.to_string()))
            .send()
            .await
            .map(drop)
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)));
        // A newer decision was recorded meanwhile: its own run marks it.
        if condition_failed(&result) {
            return Ok(());
        }
        result
    }

    async fn add_certificates(
        &self,
        thing_name: &str,
        holdings: &Holdings,
    ) -> Result<(), LedgerError> {
        const OP: &str = "UpdateItem";
        let mut latest = holdings.latest.as_ref();
        loop {
            let mut sets = vec!["thingName = :thing"];
            let mut adds = Vec::new();
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(device_pk(thing_name)))
                .key("sk", AttributeValue::S(STATE_KEY.into()))
                .expression_attribute_values(":thing", AttributeValue::S(thing_name.into()));
            // DynamoDB refuses empty sets: add only what there is.
            if !holdings.held.is_empty() {
                adds.push("certificates :held");
                request = request.expression_attribute_values(
                    ":held",
                    AttributeValue::Ss(holdings.held.clone()),
                );
            }
            if !holdings.retired.is_empty() {
                adds.push("retired :retired");
                request = request.expression_attribute_values(
                    ":retired",
                    AttributeValue::Ss(holdings.retired.clone()),
                );
            }
            if !holdings.refused.is_empty() {
                adds.push("refused :refused");
                request = request.expression_attribute_values(
                    ":refused",
                    AttributeValue::Ss(holdings.refused.clone()),
                );
            }
            if let Some(latest) = latest {
                sets.push("latestCertificate = :latest, latestNotBefore = :notBefore");
                request = request
                    .expression_attribute_values(
                        ":latest",
                        AttributeValue::S(latest.certificate_id.clone()),
                    )
                    .expression_attribute_values(
                        ":notBefore",
                        AttributeValue::N(latest.not_before.to_string()),
                    )
                    .condition_expression(
                        "attribute_not_exists(latestNotBefore) OR latestNotBefore <= :notBefore",
                    );
            }
            let mut expression = format!("SET {}", sets.join(", "));
            if !adds.is_empty() {
                expression.push_str(&format!(" ADD {}", adds.join(", ")));
            }
            let result = request
                .update_expression(expression)
                .send()
                .await
                .map(drop)
                .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)));
            // A newer certificate is already the latest: add the sets alone.
            if latest.is_some() && condition_failed(&result) {
                latest = None;
                continue;
            }
            return result;
        }
    }

    async fn append_history(
        &self,
        thing_name: &str,
        entry: &HistoryEntry,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem";
        // Kept from when it was written, not from the sender's stamp: an old stamp must not
        // give its entry a TTL that erases it at once (invariant 9).
        let expires_at = history_expiry(entry, crate::unix_now(), self.history_days);
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(device_pk(thing_name)))
            .item("sk", AttributeValue::S(entry.sort_key()))
            .item("atMs", AttributeValue::N(entry.at_ms.to_string()))
            .item("source", AttributeValue::S(entry.source.clone()))
            .item("what", AttributeValue::S(entry.what.clone()))
            .item("expiresAt", AttributeValue::N(expires_at.to_string()));
        for (name, value) in [
            ("certificateId", &entry.certificate_id),
            ("reason", &entry.reason),
            ("eventId", &entry.event_id),
        ] {
            if let Some(value) = value {
                request = request.item(name, AttributeValue::S(value.clone()));
            }
        }
        request
            .send()
            .await
            .map(drop)
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))
    }

    async fn admitted(&self, certificate_id: &str) -> Result<Option<i64>, LedgerError> {
        const OP: &str = "GetItem";
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(admission_key(certificate_id)))
            .key("sk", AttributeValue::S(ADMISSION_SORT_KEY.into()))
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))?;
        Ok(output.item().and_then(|item| number(item, "admittedAt")))
    }

    async fn record_admission(&self, certificate_id: &str, at: i64) -> Result<(), LedgerError> {
        self.put_admission(certificate_id, Some(at)).await
    }

    async fn forget_admission(&self, certificate_id: &str) -> Result<(), LedgerError> {
        self.put_admission(certificate_id, None).await
    }

    async fn raise_list_mark(
        &self,
        source: &str,
        ca_certificate_id: &str,
        mark: &ListMark,
    ) -> Result<ListMark, LedgerError> {
        const OP: &str = "UpdateItem";
        let key = list_mark_key(source, ca_certificate_id);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.clone()))
            .key("sk", AttributeValue::S(LIST_MARK_SORT_KEY.into()))
            .expression_attribute_values(":tu", AttributeValue::N(mark.this_update.to_string()));
        // Written only over an older mark (ListMark::is_older_than, as a condition): a numbered
        // list over a lower number, or the same number with an earlier thisUpdate, or over an
        // unnumbered one by thisUpdate; an unnumbered list by thisUpdate alone.
        request = match mark.number_key() {
            Some(number) => request
                .update_expression("SET numberKey = :nk, thisUpdate = :tu")
                .condition_expression(
                    "attribute_not_exists(pk) OR numberKey < :nk \
                     OR (numberKey = :nk AND thisUpdate < :tu) \
                     OR (attribute_not_exists(numberKey) AND thisUpdate < :tu)",
                )
                .expression_attribute_values(":nk", AttributeValue::S(number)),
            None => request
                .update_expression("SET thisUpdate = :tu REMOVE numberKey")
                .condition_expression("attribute_not_exists(pk) OR thisUpdate < :tu"),
        };
        let written = request
            .send()
            .await
            .map(drop)
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)));
        if !condition_failed(&written) {
            return written.map(|()| mark.clone());
        }
        // A mark as new or newer is recorded: read it, strongly consistent.
        let item = self.get_consistent(key, LIST_MARK_SORT_KEY).await?;
        item.as_ref().and_then(mark_of).ok_or_else(|| LedgerError {
            kind: RegistryErrorKind::Unavailable,
            operation: "GetItem",
            message: "the list mark changed while it was written; retry".into(),
        })
    }

    async fn list_mark(
        &self,
        source: &str,
        ca_certificate_id: &str,
    ) -> Result<Option<ListMark>, LedgerError> {
        let key = list_mark_key(source, ca_certificate_id);
        let item = self.get_consistent(key, LIST_MARK_SORT_KEY).await?;
        Ok(item.as_ref().and_then(mark_of))
    }

    async fn sync_progress(
        &self,
        source: &str,
        ca_certificate_id: &str,
    ) -> Result<Option<SyncProgress>, LedgerError> {
        let key = sync_progress_key(source, ca_certificate_id);
        let item = self.get_consistent(key, SYNC_PROGRESS_SORT_KEY).await?;
        Ok(item.as_ref().and_then(|item| {
            Some(SyncProgress {
                mark: mark_of(item)?,
                next: u64::try_from(number(item, "next")?).ok()?,
                walk_after: text(item, "walkAfter"),
                complete: item
                    .get("complete")
                    .and_then(|v| v.as_bool().ok())
                    .copied()?,
            })
        }))
    }

    async fn save_sync_progress(
        &self,
        source: &str,
        ca_certificate_id: &str,
        progress: &SyncProgress,
    ) -> Result<(), LedgerError> {
        const OP: &str = "PutItem";
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                "pk",
                AttributeValue::S(sync_progress_key(source, ca_certificate_id)),
            )
            .item("sk", AttributeValue::S(SYNC_PROGRESS_SORT_KEY.into()))
            .item(
                "thisUpdate",
                AttributeValue::N(progress.mark.this_update.to_string()),
            )
            .item("next", AttributeValue::N(progress.next.to_string()))
            .item("complete", AttributeValue::Bool(progress.complete));
        if let Some(number) = progress.mark.number_key() {
            request = request.item("numberKey", AttributeValue::S(number));
        }
        if let Some(after) = &progress.walk_after {
            request = request.item("walkAfter", AttributeValue::S(after.clone()));
        }
        request
            .send()
            .await
            .map(drop)
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))
    }

    async fn document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        let item = self
            .get_consistent(document_key(document), DOCUMENT_SORT_KEY)
            .await?;
        Ok(item
            .as_ref()
            .and_then(|item| number(item, "generation"))
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    async fn bump_document_generation(&self, document: &str) -> Result<u64, LedgerError> {
        const OP: &str = "UpdateItem";
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(document_key(document)))
            .key("sk", AttributeValue::S(DOCUMENT_SORT_KEY.into()))
            .update_expression("ADD generation :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))?;
        Ok(output
            .attributes
            .as_ref()
            .and_then(|item| number(item, "generation"))
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    async fn history(&self, thing_name: &str) -> Result<Vec<HistoryEntry>, LedgerError> {
        const OP: &str = "Query";
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :history)")
            .expression_attribute_values(":pk", AttributeValue::S(device_pk(thing_name)))
            .expression_attribute_values(":history", AttributeValue::S("HISTORY#".into()))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))?;
        Ok(items.iter().filter_map(history_entry).collect())
    }
}

impl DynamoLedger {
    /// One item, read strongly consistent; `None` when absent.
    async fn get_consistent(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LedgerError> {
        const OP: &str = "GetItem";
        self.client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.into()))
            .send()
            .await
            .map(|output| output.item)
            .map_err(|e| ledger_error(&self.table, OP, classify(OP, e)))
    }
}

/// A list mark stored as `numberKey` (absent for a list without a number) and `thisUpdate`.
fn mark_of(item: &HashMap<String, AttributeValue>) -> Option<ListMark> {
    let number_key = item.get("numberKey").and_then(|v| v.as_s().ok());
    ListMark::from_number_key(number_key.map(String::as_str), number(item, "thisUpdate")?)
}

/// The sparse global secondary index of the serial-index items by CA (`caCertificateId`, then
/// `serialHex`): the sync walks it when a list is far longer than the CA's index.
pub const CA_INDEX: &str = "byCa";

/// How often a document was announced changed: `pk = DOCUMENT#<source>`, `sk = GENERATION`.
fn document_key(document: &str) -> String {
    format!("DOCUMENT#{document}")
}

const DOCUMENT_SORT_KEY: &str = "GENERATION";

/// How far the revocation sync got with a source for a CA: `pk = SYNC#<caId>#<source>`,
/// `sk = PROGRESS`.
fn sync_progress_key(source: &str, ca_certificate_id: &str) -> String {
    format!("SYNC#{ca_certificate_id}#{source}")
}

const SYNC_PROGRESS_SORT_KEY: &str = "PROGRESS";

/// The newest list accepted from a source for a CA: `pk = LISTMARK#<caId>#<source>`, `sk = MARK`.
fn list_mark_key(source: &str, ca_certificate_id: &str) -> String {
    format!("LISTMARK#{ca_certificate_id}#{source}")
}

const LIST_MARK_SORT_KEY: &str = "MARK";

/// When a history entry expires: `days` after the later of its time and `now` (seconds).
fn history_expiry(entry: &HistoryEntry, now: i64, days: u32) -> i64 {
    (entry.at_ms / 1000).max(now) + i64::from(days) * 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18, defect 9: a far-past stamp must not give its history entry a TTL in the past.
    #[test]
    fn history_expires_from_when_it_was_written() {
        let entry = |at_ms| HistoryEntry {
            at_ms,
            source: "lifecycle:direct".into(),
            what: "deactivate".into(),
            certificate_id: None,
            reason: None,
            event_id: Some("e".into()),
        };
        let now = 1_800_000_000;
        assert_eq!(history_expiry(&entry(0), now, 400), now + 400 * 86_400);
        assert_eq!(
            history_expiry(&entry((now + 60) * 1000), now, 1),
            now + 60 + 86_400
        );
    }
}
