//! The decommissioned-certificates list: one S3 object per certificate the lifecycle function
//! deleted, consulted by registration so just-in-time registration cannot re-admit it.
//!
//! Why it exists: with auto-registration on, a deleted certificate is unknown to IoT again,
//! so the device's next connect registers it PENDING_ACTIVATION and publishes the event once
//! more. Without this record, a decommissioned device would be back within a second.
//! One object per certificate (no read-modify-write), written before the certificate is
//! deleted, so a retry after any failure still finds it. S3 types stay in this file.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::JitrError;
use crate::s3::{describe, status};

/// `s3://bucket/prefix/`: where the markers live (`<prefix><certificateId>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Folder {
    pub bucket: String,
    pub prefix: String,
}

impl FromStr for S3Folder {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let rest = value
            .strip_prefix("s3://")
            .ok_or_else(|| format!("expected s3://bucket/prefix/, got {value:?}"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!("invalid bucket name in {value:?}"));
        }
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
        })
    }
}

/// Where decommissioned certificates are remembered.
#[derive(Debug, Clone, Default)]
pub enum DecommissionedList {
    /// Not configured: nothing is remembered (a deleted certificate can come back via JITR).
    #[default]
    Off,
    S3 {
        client: aws_sdk_s3::Client,
        folder: S3Folder,
    },
    /// For tests and the offline demo; clones share the set.
    Memory(Arc<Mutex<HashSet<String>>>),
}

impl DecommissionedList {
    /// The S3 list when a folder is configured, `Off` otherwise (the functions' wiring).
    pub fn from_folder(sdk: &aws_config::SdkConfig, folder: Option<S3Folder>) -> Self {
        folder.map_or(Self::Off, |folder| Self::s3(sdk, folder))
    }

    pub fn s3(sdk: &aws_config::SdkConfig, folder: S3Folder) -> Self {
        Self::S3 {
            client: crate::s3::client(sdk),
            folder,
        }
    }

    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Whether the certificate was decommissioned. Errors are retryable: registration fails
    /// closed rather than admit a certificate it could not check.
    pub async fn contains(&self, certificate_id: &str) -> Result<bool, JitrError> {
        match self {
            Self::Off => Ok(false),
            Self::Memory(set) => Ok(lock(set).contains(certificate_id)),
            Self::S3 { client, folder } => {
                let key = format!("{}{certificate_id}", folder.prefix);
                match client
                    .head_object()
                    .bucket(&folder.bucket)
                    .key(&key)
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(err) if status(&err) == Some(404) => Ok(false),
                    Err(err) => Err(unavailable("HeadObject", &folder.bucket, &key, &err)),
                }
            }
        }
    }

    /// Remembers a certificate before it is deleted; repeating it is harmless.
    pub async fn record(
        &self,
        certificate_id: &str,
        device_id: &str,
        now: i64,
    ) -> Result<(), JitrError> {
        match self {
            Self::Off => Ok(()),
            Self::Memory(set) => {
                lock(set).insert(certificate_id.to_owned());
                Ok(())
            }
            Self::S3 { client, folder } => {
                let key = format!("{}{certificate_id}", folder.prefix);
                let body = serde_json::json!({
                    "certificateId": certificate_id,
                    "deviceId": device_id,
                    "decommissionedAt": now,
                })
                .to_string();
                client
                    .put_object()
                    .bucket(&folder.bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(body.into_bytes().into())
                    .send()
                    .await
                    .map(drop)
                    .map_err(|err| unavailable("PutObject", &folder.bucket, &key, &err))
            }
        }
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unavailable<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    err: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> JitrError {
    JitrError::DecommissionedListUnavailable(format!(
        "{operation} s3://{bucket}/{key}: {}",
        describe(err)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_parse_and_normalise() {
        let cases = [
            (
                "s3://bucket-1/decommissioned/",
                Ok(("bucket-1", "decommissioned/")),
            ),
            ("s3://bucket-1/a/b", Ok(("bucket-1", "a/b/"))),
            ("s3://bucket-1", Ok(("bucket-1", ""))),
            ("s3://bucket-1/", Ok(("bucket-1", ""))),
            ("https://bucket-1/x", Err(())),
            ("s3://Bad_Bucket/x", Err(())),
            ("s3:///x", Err(())),
        ];
        for (input, expected) in cases {
            let parsed = input.parse::<S3Folder>();
            match expected {
                Ok((bucket, prefix)) => {
                    let folder = parsed.expect(input);
                    assert_eq!(
                        (folder.bucket.as_str(), folder.prefix.as_str()),
                        (bucket, prefix),
                        "{input}"
                    );
                }
                Err(()) => assert!(parsed.is_err(), "{input} should be refused"),
            }
        }
    }

    #[tokio::test]
    async fn memory_list_remembers_and_off_remembers_nothing() {
        let list = DecommissionedList::memory();
        let shared = list.clone();
        assert!(!list.contains("abc").await.unwrap());
        shared.record("abc", "sensor-1", 0).await.unwrap();
        shared.record("abc", "sensor-1", 1).await.unwrap();
        assert!(list.contains("abc").await.unwrap());
        let off = DecommissionedList::Off;
        off.record("abc", "sensor-1", 0).await.unwrap();
        assert!(!off.contains("abc").await.unwrap());
    }
}
