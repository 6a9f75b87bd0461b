//! The AWS adapter: the registry port over `aws-sdk-iot`. SDK types never leave this file;
//! every SDK error is classified here, from its modeled code and HTTP status, before it is
//! turned into anything else.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_iot::config::SharedHttpClient;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::types::{AttributePayload, CaCertificateStatus};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use crate::sdk_error::cause;

use jitr_domain::registry::{
    CaDescription, CertificateDescription, CertificateStatus, Registry, RegistryError,
    RegistryErrorKind, ThingDescription, ThingSpec,
};

/// SDK configuration for every AWS client of the functions: the SDK's own environment
/// variables (region, credentials, `AWS_ENDPOINT_URL[_IOT|_S3]`), standard retries with
/// exponential backoff and jitter, and bounded timeouts so a hung call cannot eat the Lambda
/// timeout.
pub async fn load_sdk_config() -> SdkConfig {
    let sdk = sdk_config_loader().load().await;
    crate::sdk_error::remember_endpoint(sdk.endpoint_url());
    sdk
}

/// The same configuration with an explicit endpoint (the CLI's `--endpoint-url`).
pub async fn load_sdk_config_for_endpoint(endpoint_url: &str) -> SdkConfig {
    crate::sdk_error::remember_endpoint(Some(endpoint_url));
    sdk_config_loader().endpoint_url(endpoint_url).load().await
}

/// The roots of Amazon Trust Services (Amazon Root CA 1 to 4, and Starfield Services Root G2
/// that cross-signs them), which sign the certificate of every AWS service endpoint.
pub const AMAZON_ROOTS: &str = include_str!("../roots/amazon-trust-services.pem");

/// The HTTPS client every AWS client uses: the SDK's own hyper client on rustls with ring (the
/// workspace's one crypto library). The SDK's default client would link aws-lc as well.
///
/// It trusts Amazon's roots alone, which is all an AWS endpoint needs: loading the platform's
/// store reads every file in its certificate directory, most of a cold start (issue 11: 6.0 ms
/// to the first poll with it, 2.3 ms without, a hello-world function 1.5 ms). With a custom
/// endpoint (`AWS_ENDPOINT_URL` or a service's `AWS_ENDPOINT_URL_*`: a proxy, an emulator) the
/// platform's roots are trusted instead.
pub fn https_client() -> SharedHttpClient {
    let custom_endpoint = std::env::vars_os().any(|(name, _)| {
        name.to_str()
            .is_some_and(|n| n.starts_with("AWS_ENDPOINT_URL"))
    });
    https_client_trusting(trust_store(custom_endpoint))
}

/// Amazon's roots, or the platform's for a custom endpoint.
fn trust_store(custom_endpoint: bool) -> tls::TrustStore {
    if custom_endpoint {
        tls::TrustStore::default()
    } else {
        tls::TrustStore::empty().with_pem_certificate(AMAZON_ROOTS.as_bytes())
    }
}

fn https_client_trusting(store: tls::TrustStore) -> SharedHttpClient {
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    match tls::TlsContext::builder().with_trust_store(store).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        // Only a malformed store fails to build; the platform's roots are the fallback.
        Err(_) => builder.build_https(),
    }
}

/// Standard retries: up to 5 attempts, exponential backoff with full jitter from 100 ms to 2 s.
///
/// Not the adaptive mode: its client-side rate limiter starts from the rate it has measured,
/// next to nothing in a fresh Lambda container, so the first throttle of a burst drops every
/// client of the process to about one call every two seconds and calls wait out the 12 s
/// operation timeout instead of retrying. Measured with the fault matrix (`tests/tests/
/// fault_matrix.rs`, 12 devices, 30 % throttling, 5 % 5xx, IoT's default quotas): adaptive,
/// none of 12 admitted in 38 s, all dead-lettered (`Retryable.Timeout`,
/// `Retryable.LedgerUnavailable`); standard, all 12 in 4.7 s.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(5)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(2))
}

/// Bounded waits: a hung call cannot eat the Lambda timeout.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(12))
        .build()
}

fn sdk_config_loader() -> aws_config::ConfigLoader {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    // In Lambda the execution role's credentials are in the environment: the default chain
    // (profile files, web identity with its STS client, the container and IMDS providers) would
    // only be built to reach them, a fifth of a cold start.
    if in_lambda_with_credentials(|name| std::env::var_os(name).is_some()) {
        return loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    loader
}

/// Lambda sets the function's name and its role's credentials.
fn in_lambda_with_credentials(set: impl Fn(&str) -> bool) -> bool {
    set("AWS_LAMBDA_FUNCTION_NAME") && set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY")
}

/// The registry port over AWS IoT Core.
#[derive(Debug, Clone)]
pub struct IotRegistry {
    client: aws_sdk_iot::Client,
}

impl IotRegistry {
    pub fn new(client: aws_sdk_iot::Client) -> Self {
        Self { client }
    }

    pub fn from_sdk_config(sdk: &SdkConfig) -> Self {
        Self::new(aws_sdk_iot::Client::new(sdk))
    }

    // Administration the functions never do, for `jitr seed` and the integration tests.

    /// GetRegistrationCode: the CN a CA's verification certificate must carry.
    pub async fn registration_code(&self) -> Result<String, RegistryError> {
        const OP: &str = "GetRegistrationCode";
        let out = self
            .client
            .get_registration_code()
            .send()
            .await
            .classified(OP)?;
        out.registration_code()
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::new(RegistryErrorKind::Other, OP, "no registration code"))
    }

    /// DescribeEndpoint (iot:Data-ATS): the host devices connect to.
    pub async fn data_endpoint(&self) -> Result<String, RegistryError> {
        const OP: &str = "DescribeEndpoint";
        let out = self
            .client
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .classified(OP)?;
        out.endpoint_address()
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::new(RegistryErrorKind::Other, OP, "no endpoint address"))
    }

    /// DescribeEventConfigurations: the registry event types that are on, sorted. JITR's
    /// registered-certificate event needs none of them (it follows the CA's auto-registration).
    pub async fn enabled_event_types(&self) -> Result<Vec<String>, RegistryError> {
        const OP: &str = "DescribeEventConfigurations";
        let out = self
            .client
            .describe_event_configurations()
            .send()
            .await
            .classified(OP)?;
        let mut on: Vec<String> = out
            .event_configurations()
            .into_iter()
            .flatten()
            .filter(|(_, c)| c.enabled())
            .map(|(kind, _)| kind.as_str().to_owned())
            .collect();
        on.sort();
        Ok(on)
    }

    /// RegisterCACertificate, ACTIVE, with auto-registration as asked. Returns the CA id;
    /// an already registered CA is success.
    pub async fn register_ca(
        &self,
        ca_pem: &str,
        verification_pem: &str,
        auto_registration: bool,
    ) -> Result<String, RegistryError> {
        const OP: &str = "RegisterCACertificate";
        let result = self
            .client
            .register_ca_certificate()
            .ca_certificate(ca_pem)
            .verification_certificate(verification_pem)
            .set_as_active(true)
            .allow_auto_registration(auto_registration)
            .send()
            .await;
        use aws_sdk_iot::operation::register_ca_certificate::RegisterCACertificateError as E;
        registered_id(
            OP,
            result.map(|out| out.certificate_id().map(str::to_owned)),
            |e| match e {
                E::ResourceAlreadyExistsException(e) => e.resource_id().map(str::to_owned),
                _ => None,
            },
        )
    }

    /// UpdateCACertificate to ACTIVE or INACTIVE.
    pub async fn set_ca_active(
        &self,
        ca_certificate_id: &str,
        active: bool,
    ) -> Result<(), RegistryError> {
        let status = if active {
            CaCertificateStatus::Active
        } else {
            CaCertificateStatus::Inactive
        };
        self.client
            .update_ca_certificate()
            .certificate_id(ca_certificate_id)
            .new_status(status)
            .send()
            .await
            .classified("UpdateCACertificate")
            .map(drop)
    }

    /// CreatePolicy; an existing policy of that name is success.
    pub async fn create_policy(&self, name: &str, document: &str) -> Result<(), RegistryError> {
        let result = self
            .client
            .create_policy()
            .policy_name(name)
            .policy_document(document)
            .send()
            .await
            .classified("CreatePolicy");
        ignore_already_exists(result.map(drop))
    }

    /// CreateThingType; an existing one is success.
    pub async fn create_thing_type(&self, name: &str) -> Result<(), RegistryError> {
        let result = self
            .client
            .create_thing_type()
            .thing_type_name(name)
            .send()
            .await
            .classified("CreateThingType");
        ignore_already_exists(result.map(drop))
    }

    /// CreateThingGroup; an existing one is success.
    pub async fn create_thing_group(&self, name: &str) -> Result<(), RegistryError> {
        let result = self
            .client
            .create_thing_group()
            .thing_group_name(name)
            .send()
            .await
            .classified("CreateThingGroup");
        ignore_already_exists(result.map(drop))
    }

    /// RegisterCertificate with its CA and a status (not PENDING_ACTIVATION, which only a
    /// device's connect can produce). Returns the id; an existing certificate is success.
    pub async fn register_certificate(
        &self,
        pem: &str,
        ca_pem: &str,
        status: &CertificateStatus,
    ) -> Result<String, RegistryError> {
        const OP: &str = "RegisterCertificate";
        let result = self
            .client
            .register_certificate()
            .certificate_pem(pem)
            .ca_certificate_pem(ca_pem)
            .status(aws_sdk_iot::types::CertificateStatus::from(status.as_str()))
            .send()
            .await;
        use aws_sdk_iot::operation::register_certificate::RegisterCertificateError as E;
        registered_id(
            OP,
            result.map(|out| out.certificate_id().map(str::to_owned)),
            |e| match e {
                E::ResourceAlreadyExistsException(e) => e.resource_id().map(str::to_owned),
                _ => None,
            },
        )
    }

    /// Every target a policy is attached to (ListTargetsForPolicy).
    pub async fn list_policy_targets(
        &self,
        policy_name: &str,
    ) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_targets_for_policy()
            .policy_name(policy_name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .classified("ListTargetsForPolicy")
    }

    /// The groups a Thing belongs to.
    pub async fn list_thing_groups_for_thing(
        &self,
        name: &str,
    ) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_thing_groups_for_thing()
            .thing_name(name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .classified("ListThingGroupsForThing")
            .map(|items| names(&items, |item| item.group_name()))
    }
}

/// How every IoT call of this adapter ends: its failure classified under the operation's
/// name (a paginated listing's `collect` too). On the result, not the future: wrapping the
/// SDK's large futures in another would double their size on the stack in debug builds.
trait Classified<T> {
    fn classified(self, operation: &'static str) -> Result<T, RegistryError>;
}

impl<T, E> Classified<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn classified(self, operation: &'static str) -> Result<T, RegistryError> {
        self.map_err(|e| classify(operation, e))
    }
}

/// The names (or ids) of a listing's items; an item without one is skipped.
fn names<T>(items: &[T], name: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| name(item).map(str::to_owned))
        .collect()
}

/// A response without a field the model leaves optional but IoT always sends.
fn missing(operation: &'static str, what: &str) -> RegistryError {
    RegistryError::new(
        RegistryErrorKind::Other,
        operation,
        format!("response has no {what}"),
    )
}

/// The id a Register* call returned or, for a certificate already registered, the id its
/// ResourceAlreadyExists error names: registering twice is success.
fn registered_id<E>(
    operation: &'static str,
    result: Result<Option<String>, SdkError<E, HttpResponse>>,
    existing: impl Fn(&E) -> Option<String>,
) -> Result<String, RegistryError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(id) => id.ok_or_else(|| {
            RegistryError::new(RegistryErrorKind::Other, operation, "no certificate id")
        }),
        Err(err) => err
            .as_service_error()
            .and_then(existing)
            .ok_or_else(|| classify(operation, err)),
    }
}

fn ignore_already_exists(result: Result<(), RegistryError>) -> Result<(), RegistryError> {
    match result {
        Err(e) if e.kind() == RegistryErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

impl Registry for IotRegistry {
    async fn describe_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<CertificateDescription, RegistryError> {
        const OP: &str = "DescribeCertificate";
        let out = self
            .client
            .describe_certificate()
            .certificate_id(certificate_id)
            .send()
            .await
            .classified(OP)?;
        let missing = |what| missing(OP, what);
        let d = out
            .certificate_description()
            .ok_or_else(|| missing("certificateDescription"))?;
        Ok(CertificateDescription {
            id: d.certificate_id().unwrap_or(certificate_id).to_owned(),
            arn: d
                .certificate_arn()
                .ok_or_else(|| missing("certificateArn"))?
                .to_owned(),
            status: CertificateStatus::parse(d.status().ok_or_else(|| missing("status"))?.as_str()),
            pem: d
                .certificate_pem()
                .ok_or_else(|| missing("certificatePem"))?
                .to_owned(),
            ca_certificate_id: d.ca_certificate_id().map(str::to_owned),
        })
    }

    async fn describe_ca_certificate(
        &self,
        ca_certificate_id: &str,
    ) -> Result<CaDescription, RegistryError> {
        const OP: &str = "DescribeCACertificate";
        let out = self
            .client
            .describe_ca_certificate()
            .certificate_id(ca_certificate_id)
            .send()
            .await
            .classified(OP)?;
        let missing = |what| missing(OP, what);
        let d = out
            .certificate_description()
            .ok_or_else(|| missing("certificateDescription"))?;
        Ok(CaDescription {
            id: d.certificate_id().unwrap_or(ca_certificate_id).to_owned(),
            active: d.status() == Some(&CaCertificateStatus::Active),
            pem: d
                .certificate_pem()
                .ok_or_else(|| missing("certificatePem"))?
                .to_owned(),
        })
    }

    async fn policy_exists(&self, policy_name: &str) -> Result<bool, RegistryError> {
        let result = self
            .client
            .get_policy()
            .policy_name(policy_name)
            .send()
            .await
            .classified("GetPolicy");
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == RegistryErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_ca_certificates(&self) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_ca_certificates()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .classified("ListCACertificates")
            .map(|items| names(&items, |item| item.certificate_id()))
    }

    async fn create_thing(&self, spec: &ThingSpec) -> Result<(), RegistryError> {
        let attributes: HashMap<String, String> = spec
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.client
            .create_thing()
            .thing_name(&spec.name)
            .set_thing_type_name(spec.type_name.clone())
            .attribute_payload(
                AttributePayload::builder()
                    .set_attributes(Some(attributes))
                    .build(),
            )
            .send()
            .await
            .classified("CreateThing")
            .map(drop)
    }

    async fn describe_thing(&self, thing_name: &str) -> Result<ThingDescription, RegistryError> {
        let out = self
            .client
            .describe_thing()
            .thing_name(thing_name)
            .send()
            .await
            .classified("DescribeThing")?;
        Ok(ThingDescription {
            name: out.thing_name().unwrap_or(thing_name).to_owned(),
            type_name: out.thing_type_name().map(str::to_owned),
            attributes: out
                .attributes()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            version: out.version(),
        })
    }

    async fn set_thing_attribute(
        &self,
        thing_name: &str,
        name: &str,
        value: &str,
        expected_version: i64,
    ) -> Result<(), RegistryError> {
        self.client
            .update_thing()
            .thing_name(thing_name)
            .attribute_payload(
                AttributePayload::builder()
                    .attributes(name, value)
                    .merge(true)
                    .build(),
            )
            .expected_version(expected_version)
            .send()
            .await
            .classified("UpdateThing")
            .map(drop)
    }

    async fn add_thing_to_group(
        &self,
        thing_name: &str,
        group_name: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .add_thing_to_thing_group()
            .thing_name(thing_name)
            .thing_group_name(group_name)
            .send()
            .await
            .classified("AddThingToThingGroup")
            .map(drop)
    }

    async fn attach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .attach_policy()
            .policy_name(policy_name)
            .target(target_arn)
            .send()
            .await
            .classified("AttachPolicy")
            .map(drop)
    }

    async fn attach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .attach_thing_principal()
            .thing_name(thing_name)
            .principal(principal_arn)
            .send()
            .await
            .classified("AttachThingPrincipal")
            .map(drop)
    }

    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: &CertificateStatus,
    ) -> Result<(), RegistryError> {
        self.client
            .update_certificate()
            .certificate_id(certificate_id)
            .new_status(aws_sdk_iot::types::CertificateStatus::from(status.as_str()))
            .send()
            .await
            .classified("UpdateCertificate")
            .map(drop)
    }

    async fn list_thing_principals(&self, thing_name: &str) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_thing_principals()
            .thing_name(thing_name)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .classified("ListThingPrincipals")
    }

    async fn list_principal_things(
        &self,
        principal_arn: &str,
    ) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_principal_things()
            .principal(principal_arn)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .classified("ListPrincipalThings")
    }

    async fn things_with_attribute(
        &self,
        name: &str,
        value: &str,
    ) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_things()
            .attribute_name(name)
            .attribute_value(value)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .classified("ListThings")
            .map(|items| names(&items, |item| item.thing_name()))
    }

    async fn list_attached_policies(&self, target_arn: &str) -> Result<Vec<String>, RegistryError> {
        self.client
            .list_attached_policies()
            .target(target_arn)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .classified("ListAttachedPolicies")
            .map(|items| names(&items, |item| item.policy_name()))
    }

    async fn detach_thing_principal(
        &self,
        thing_name: &str,
        principal_arn: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .detach_thing_principal()
            .thing_name(thing_name)
            .principal(principal_arn)
            .send()
            .await
            .classified("DetachThingPrincipal")
            .map(drop)
    }

    async fn detach_policy(
        &self,
        policy_name: &str,
        target_arn: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .detach_policy()
            .policy_name(policy_name)
            .target(target_arn)
            .send()
            .await
            .classified("DetachPolicy")
            .map(drop)
    }

    async fn delete_certificate(&self, certificate_id: &str) -> Result<(), RegistryError> {
        self.client
            .delete_certificate()
            .certificate_id(certificate_id)
            .send()
            .await
            .classified("DeleteCertificate")
            .map(drop)
    }

    async fn delete_thing(&self, thing_name: &str) -> Result<(), RegistryError> {
        self.client
            .delete_thing()
            .thing_name(thing_name)
            .send()
            .await
            .classified("DeleteThing")
            .map(drop)
    }
}

/// Classifies an SDK error by transport failure, modeled code and HTTP status (any AWS SDK's:
/// the DynamoDB ledger adapter uses it too).
pub(crate) fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, message) = match &err {
        SdkError::TimeoutError(_) => (RegistryErrorKind::Timeout, cause(operation, &err)),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            (RegistryErrorKind::Timeout, cause(operation, &err))
        }
        SdkError::DispatchFailure(_) => (RegistryErrorKind::Dispatch, cause(operation, &err)),
        SdkError::ResponseError(_) => (RegistryErrorKind::Unavailable, cause(operation, &err)),
        SdkError::ServiceError(service) => {
            let code = service.err().code();
            let kind = kind_for(code, service.raw().status().as_u16());
            let message = format!(
                "{}: {}",
                code.unwrap_or("HTTP error"),
                service.err().message().unwrap_or("no message")
            );
            (kind, message)
        }
        _ => (RegistryErrorKind::Other, cause(operation, &err)),
    };
    RegistryError::new(kind, operation, message)
}

/// The kind for a service error: the modeled code first, the HTTP status as a fallback.
fn kind_for(code: Option<&str>, status: u16) -> RegistryErrorKind {
    use RegistryErrorKind as K;
    match code {
        // IoT's LimitExceededException (HTTP 410) is an entity limit (policies on a certificate,
        // principals on a Thing), not a rate; ThrottlingException is the rate
        // (https://docs.aws.amazon.com/iot/latest/apireference/API_AttachPolicy.html, "Errors").
        Some("LimitExceededException") => K::LimitExceeded,
        Some(
            "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException",
        ) => K::Throttled,
        Some(
            "ServiceUnavailableException"
            | "InternalFailureException"
            | "InternalException"
            | "InternalServerException",
        ) => K::Unavailable,
        Some(
            "UnauthorizedException"
            | "AccessDeniedException"
            | "AccessDenied"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "InvalidSignatureException",
        ) => K::AccessDenied,
        Some("ResourceNotFoundException" | "NotFoundException") => K::NotFound,
        Some("ResourceAlreadyExistsException") => K::AlreadyExists,
        Some(
            "CertificateStateException"
            | "DeleteConflictException"
            | "VersionConflictException"
            | "ConflictingResourceUpdateException"
            | "ConditionalCheckFailedException"
            | "TransactionConflictException",
        ) => K::Conflict,
        Some(
            "InvalidRequestException"
            | "InvalidStateTransitionException"
            | "CertificateValidationException"
            | "RegistrationCodeValidationException"
            | "MalformedPolicyException",
        ) => K::InvalidRequest,
        _ => match status {
            429 => K::Throttled,
            401 | 403 => K::AccessDenied,
            404 => K::NotFound,
            409 => K::Conflict,
            500..=599 => K::Unavailable,
            400..=499 => K::InvalidRequest,
            _ => K::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_own_credentials_are_read_from_the_environment_only_in_lambda() {
        fn set<'a>(names: &'a [&'a str]) -> impl Fn(&str) -> bool + 'a {
            move |name| names.contains(&name)
        }
        let lambda = [
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ];
        assert!(in_lambda_with_credentials(set(&lambda)));
        // A developer's shell or CI: the default chain (profiles, SSO, web identity).
        assert!(!in_lambda_with_credentials(set(&lambda[1..])));
        // In Lambda without keys in the environment (never, today): the default chain too.
        assert!(!in_lambda_with_credentials(set(&lambda[..1])));
    }

    /// The embedded roots are five self-signed CA certificates of Amazon Trust Services, and
    /// the TLS context accepts them.
    #[test]
    fn amazon_roots_are_the_trust_services_cas() {
        let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(AMAZON_ROOTS.as_bytes())
            .map(|block| block.unwrap())
            .collect();
        assert_eq!(blocks.len(), 5);
        for block in &blocks {
            let cert = block.parse_x509().unwrap();
            assert!(cert.is_ca(), "{}", cert.subject());
            assert_eq!(cert.subject(), cert.issuer(), "a root signs itself");
            let organization = cert.subject().iter_organization().next().unwrap();
            let organization = organization.as_str().unwrap();
            assert!(
                ["Amazon", "Starfield Technologies, Inc."].contains(&organization),
                "{organization}"
            );
        }
        assert!(
            tls::TlsContext::builder()
                .with_trust_store(trust_store(false))
                .build()
                .is_ok()
        );
    }
    use aws_sdk_iot::Client;
    use aws_sdk_iot::operation::attach_policy::AttachPolicyError;
    use aws_sdk_iot::operation::create_thing::CreateThingError;
    use aws_sdk_iot::operation::describe_certificate::DescribeCertificateError;
    use aws_sdk_iot::operation::update_certificate::UpdateCertificateError;
    use aws_sdk_iot::types::error::{
        InternalFailureException, ResourceAlreadyExistsException, ResourceNotFoundException,
        ServiceUnavailableException, ThrottlingException, UnauthorizedException,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[test]
    fn an_iot_entity_limit_is_permanent_and_a_rate_limit_retryable() {
        assert_eq!(
            kind_for(Some("LimitExceededException"), 410).class(),
            jitr_domain::ErrorClass::Permanent
        );
        assert_eq!(
            kind_for(Some("ThrottlingException"), 400).class(),
            jitr_domain::ErrorClass::Retryable
        );
    }

    #[test]
    fn kind_table() {
        use RegistryErrorKind as K;
        let cases = [
            (Some("ThrottlingException"), 400, K::Throttled),
            (Some("LimitExceededException"), 410, K::LimitExceeded),
            (None, 429, K::Throttled),
            (Some("ServiceUnavailableException"), 503, K::Unavailable),
            (Some("InternalFailureException"), 500, K::Unavailable),
            (None, 502, K::Unavailable),
            (Some("UnauthorizedException"), 401, K::AccessDenied),
            (Some("AccessDeniedException"), 403, K::AccessDenied),
            (None, 403, K::AccessDenied),
            (Some("ResourceNotFoundException"), 404, K::NotFound),
            (
                Some("ResourceAlreadyExistsException"),
                409,
                K::AlreadyExists,
            ),
            (Some("CertificateStateException"), 406, K::Conflict),
            (Some("DeleteConflictException"), 409, K::Conflict),
            (Some("InvalidRequestException"), 400, K::InvalidRequest),
            (None, 400, K::InvalidRequest),
            (Some("SomethingNew"), 200, K::Other),
        ];
        for (code, status, kind) in cases {
            assert_eq!(kind_for(code, status), kind, "{code:?} {status}");
        }
    }

    /// The metadata a real error response carries: its modeled code.
    fn meta(code: &str) -> aws_smithy_types::error::ErrorMetadata {
        aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .build()
    }

    fn registry(rule: &aws_smithy_mocks::Rule) -> IotRegistry {
        IotRegistry::new(mock_client!(aws_sdk_iot, RuleMode::Sequential, &[rule]))
    }

    #[tokio::test]
    async fn modeled_errors_are_classified() {
        let throttled = mock!(Client::attach_policy)
            .sequence()
            .error(|| {
                AttachPolicyError::ThrottlingException(
                    ThrottlingException::builder()
                        .message("slow down")
                        .meta(meta("ThrottlingException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        let err = registry(&throttled)
            .attach_policy("p", "arn")
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.operation()),
            (RegistryErrorKind::Throttled, "AttachPolicy")
        );
        assert_eq!(err.kind().class(), jitr_domain::ErrorClass::Retryable);

        let unavailable = mock!(Client::attach_policy)
            .sequence()
            .error(|| {
                AttachPolicyError::ServiceUnavailableException(
                    ServiceUnavailableException::builder()
                        .meta(meta("ServiceUnavailableException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        assert_eq!(
            registry(&unavailable)
                .attach_policy("p", "a")
                .await
                .unwrap_err()
                .kind(),
            RegistryErrorKind::Unavailable
        );

        let internal = mock!(Client::attach_policy)
            .sequence()
            .error(|| {
                AttachPolicyError::InternalFailureException(
                    InternalFailureException::builder()
                        .meta(meta("InternalFailureException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        assert_eq!(
            registry(&internal)
                .attach_policy("p", "a")
                .await
                .unwrap_err()
                .kind(),
            RegistryErrorKind::Unavailable
        );

        let denied = mock!(Client::update_certificate)
            .sequence()
            .error(|| {
                UpdateCertificateError::UnauthorizedException(
                    UnauthorizedException::builder()
                        .meta(meta("UnauthorizedException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        let err = registry(&denied)
            .update_certificate_status("c", &CertificateStatus::Active)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), RegistryErrorKind::AccessDenied);
        assert_eq!(err.kind().class(), jitr_domain::ErrorClass::Permanent);

        let missing = mock!(Client::describe_certificate)
            .sequence()
            .error(|| {
                DescribeCertificateError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .meta(meta("ResourceNotFoundException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        assert_eq!(
            registry(&missing)
                .describe_certificate("c")
                .await
                .unwrap_err()
                .kind(),
            RegistryErrorKind::NotFound
        );

        let exists = mock!(Client::create_thing)
            .sequence()
            .error(|| {
                CreateThingError::ResourceAlreadyExistsException(
                    ResourceAlreadyExistsException::builder()
                        .meta(meta("ResourceAlreadyExistsException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        let err = registry(&exists)
            .create_thing(&ThingSpec {
                name: "t".into(),
                ..ThingSpec::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), RegistryErrorKind::AlreadyExists);
    }

    #[tokio::test]
    async fn raw_http_errors_are_classified_by_status() {
        let cases = [
            (500, RegistryErrorKind::Unavailable),
            (503, RegistryErrorKind::Unavailable),
            (403, RegistryErrorKind::AccessDenied),
            (429, RegistryErrorKind::Throttled),
        ];
        for (status, kind) in cases {
            let rule = mock!(Client::attach_thing_principal)
                .sequence()
                .http_status(status, Some("{}".into()))
                .repeatedly()
                .build();
            let err = registry(&rule)
                .attach_thing_principal("t", "arn")
                .await
                .unwrap_err();
            assert_eq!(err.kind(), kind, "HTTP {status}");
        }
    }

    #[tokio::test]
    async fn success_is_mapped_without_sdk_types() {
        let rule = mock!(Client::describe_certificate).then_output(|| {
            aws_sdk_iot::operation::describe_certificate::DescribeCertificateOutput::builder()
                .certificate_description(
                    aws_sdk_iot::types::CertificateDescription::builder()
                        .certificate_id("c")
                        .certificate_arn("arn:aws:iot:eu-west-1:123456789012:cert/c")
                        .status(aws_sdk_iot::types::CertificateStatus::PendingActivation)
                        .certificate_pem("PEM")
                        .ca_certificate_id("ca")
                        .build(),
                )
                .build()
        });
        let d = registry(&rule).describe_certificate("c").await.unwrap();
        assert_eq!(d.status, CertificateStatus::PendingActivation);
        assert_eq!(d.ca_certificate_id.as_deref(), Some("ca"));
    }

    /// A real client against loopback sockets: nothing listening, and a listener that never answers.
    #[tokio::test]
    async fn dispatch_failures_and_timeouts_are_retryable() {
        let refused = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = socket.local_addr().unwrap().port();
            drop(socket);
            port
        };
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let _accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let client = |port: u16| {
            let config = aws_sdk_iot::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(https_client())
                .region(aws_sdk_iot::config::Region::new("eu-west-1"))
                .credentials_provider(aws_sdk_iot::config::Credentials::for_tests())
                .endpoint_url(format!("http://127.0.0.1:{port}"))
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_attempt_timeout(Duration::from_millis(300))
                        .build(),
                )
                .build();
            IotRegistry::new(Client::from_conf(config))
        };
        let err = client(refused).describe_certificate("c").await.unwrap_err();
        assert_eq!(err.kind(), RegistryErrorKind::Dispatch, "{err}");
        let err = client(silent_port)
            .describe_certificate("c")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), RegistryErrorKind::Timeout, "{err}");
        assert_eq!(err.kind().class(), jitr_domain::ErrorClass::Retryable);
    }
}
