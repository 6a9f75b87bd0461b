//! The ledger on DynamoDB (`DEVICE_LEDGER_TABLE`): one table, partition key `pk`, sort key `sk`,
//! both strings. A serial's entries share `pk = SERIAL#<caId>#<serialHex>`, one item per
//! certificate (`sk = CERT#<certificateId>`), so the sync finds them with one strongly
//! consistent Query, never a scan. DynamoDB types stay in this file.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Ledger, LedgerError, Revoked, SerialEntry, certificate_key, serial_key};
use crate::registry::RegistryErrorKind;
use crate::registry::iot::classify;

/// The ledger table through the AWS SDK.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }

    /// Creates the table as the template does (on demand; for tests and `jitr`).
    pub async fn create_table(&self) -> Result<(), LedgerError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
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
            Ok::<_, aws_sdk_dynamodb::error::BuildError>((
                attribute("pk")?,
                attribute("sk")?,
                key("pk", KeyType::Hash)?,
                key("sk", KeyType::Range)?,
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
            .attribute_definitions(built.0)
            .attribute_definitions(built.1)
            .key_schema(built.2)
            .key_schema(built.3)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match ledger_error("CreateTable", classify("CreateTable", e)) {
                err if err.message.contains("ResourceInUseException") => Ok(()),
                err => Err(err),
            },
        }
    }
}

fn ledger_error(operation: &'static str, err: crate::registry::RegistryError) -> LedgerError {
    LedgerError {
        kind: err.kind(),
        operation,
        message: err.to_string(),
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
            .map_err(|e| ledger_error(OP, classify(OP, e)))
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
            .map_err(|e| ledger_error(OP, classify(OP, e)))?;
        Ok(pages
            .iter()
            .filter_map(|item| {
                Some(SerialEntry {
                    ca_certificate_id: ca_certificate_id.to_owned(),
                    serial_hex: serial_hex.to_owned(),
                    certificate_id: text(item, "certificateId")?,
                    thing_name: text(item, "thingName").unwrap_or_default(),
                    admitted_at: number(item, "admittedAt").unwrap_or_default(),
                    revoked: number(item, "revokedAt").map(|at| Revoked {
                        at,
                        by: text(item, "revokedBy").unwrap_or_default(),
                    }),
                })
            })
            .collect())
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
                let mut err = ledger_error(OP, classify(OP, e));
                // The condition failed: no such entry.
                if err.kind == RegistryErrorKind::Conflict {
                    err.kind = RegistryErrorKind::NotFound;
                }
                Err(err)
            }
        }
    }
}
