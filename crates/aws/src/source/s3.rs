//! The S3 adapter for documents (revocation lists, profiles): a conditional GET on the ETag, so
//! a refresh of an unchanged object costs one small request. S3 types stay in this file.

use std::sync::{Arc, OnceLock};

use aws_sdk_s3::error::ProvideErrorMetadata;

use super::BodyBuffer;
use crate::s3::status;
use crate::sdk_error::describe;
use jitr_domain::source::{FetchError, Fetched, MAX_DOCUMENT_BYTES, Validator};

/// S3 answers a GetObject for a missing key with 403 unless the caller may list the bucket
/// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, "Permissions"); the
/// template grants s3:ListBucket on the keys it reads, but a role without it sees only 403.
const MISSING_OR_DENIED: &str = " (S3 also answers 403 for a missing object when the role may not list the bucket: check that it exists)";

/// Fetches objects (revocation lists, profiles) from S3.
///
/// The client is built on first use: a function whose documents are not in S3 never pays for it
/// at cold start (an SDK client parses its endpoint rules and partitions when built).
#[derive(Debug, Clone)]
pub struct S3Fetcher {
    sdk: aws_config::SdkConfig,
    client: Arc<OnceLock<aws_sdk_s3::Client>>,
}

impl S3Fetcher {
    /// Keeps the shared SDK configuration for the client (path-style for a custom endpoint).
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            sdk: sdk.clone(),
            client: Arc::default(),
        }
    }

    fn client(&self) -> &aws_sdk_s3::Client {
        self.client.get_or_init(|| crate::s3::client(&self.sdk))
    }

    /// Publishes an object, creating the bucket in the client's region if needed (for
    /// `jitr seed` and tests; the functions only read).
    pub async fn publish(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        let mut create = self.client().create_bucket().bucket(bucket);
        // As on AWS, a bucket outside us-east-1 must name its region.
        let region = self
            .client()
            .config()
            .region()
            .map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        region.as_str(),
                    ))
                    .build(),
            );
        }
        if let Err(err) = create.send().await {
            let code = err
                .as_service_error()
                .and_then(|e| e.code())
                .unwrap_or_default();
            if !matches!(code, "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") {
                return Err(format!(
                    "create bucket {bucket}: {}",
                    describe("CreateBucket", &err)
                ));
            }
        }
        self.client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .map(drop)
            .map_err(|e| format!("put s3://{bucket}/{key}: {}", describe("PutObject", &e)))
    }

    pub(super) async fn get(
        &self,
        bucket: &str,
        key: &str,
        validator: Option<&Validator>,
    ) -> Result<Fetched, FetchError> {
        let mut request = self.client().get_object().bucket(bucket).key(key);
        match validator {
            Some(Validator::ETag(etag)) => request = request.if_none_match(etag),
            // S3 always sends an ETag; a Last-Modified validator would come from elsewhere.
            Some(Validator::LastModified(_)) | None => {}
        }
        match request.send().await {
            Ok(output) => {
                let validator = output.e_tag().map(|e| Validator::ETag(e.to_owned()));
                let announced = output.content_length().and_then(|n| u64::try_from(n).ok());
                let mut buffer = BodyBuffer::new(announced, MAX_DOCUMENT_BYTES);
                let mut body = output.body;
                let failed = |e: String| FetchError(format!("s3://{bucket}/{key}: body: {e}"));
                while let Some(chunk) = body.try_next().await.map_err(|e| failed(e.to_string()))? {
                    buffer.push(&chunk).map_err(failed)?;
                }
                Ok(Fetched::Body {
                    bytes: buffer.into_bytes(),
                    validator,
                })
            }
            Err(err) if status(&err) == Some(304) => Ok(Fetched::NotModified),
            Err(err) => Err(FetchError(format!(
                "s3://{bucket}/{key}: {}{}",
                describe("GetObject", &err),
                if status(&err) == Some(403) {
                    MISSING_OR_DENIED
                } else {
                    ""
                }
            ))),
        }
    }
}
