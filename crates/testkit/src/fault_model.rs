//! The quota and fault model: an HTTP client for the AWS SDK that sits between the real adapters
//! and the emulator, so what runs through it is the adapters' own retry and timeout
//! configuration (`jitr_aws::iot::{retry_config, timeout_config}`), not a stand-in.
//!
//! Per IoT API it keeps a token bucket at the account's quota (AWS's documented defaults unless
//! told otherwise) and answers `ThrottlingException` (HTTP 429) beyond it, as IoT Core does; on
//! top, at configurable rates, it throttles anyway, answers 5xx, drops the connection, or holds
//! the request past the SDK's attempt timeout, and adds latency to every call. Every decision is
//! counted, so a test can say how much it survived.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_iot::config::SharedHttpClient;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use jitr_aws::iot::{https_client, retry_config, timeout_config};

/// AWS IoT Core's default per-account rates (requests per second) for every call JITR makes:
/// the README's "IoT quotas" table, row for row (`tests/tests/quotas.rs` holds them equal).
/// Rates the table marks unconfirmed are modelled at 10/s, IoT's lowest common default.
pub const DEFAULT_IOT_QUOTAS: [(&str, f64); 19] = [
    ("DescribeCertificate", 10.0),
    ("UpdateCertificate", 10.0),
    ("DescribeCACertificate", 10.0),
    ("ListCACertificates", 10.0),
    ("AttachPolicy", 15.0),
    ("GetPolicy", 10.0),
    ("CreateThing", 15.0),
    ("DescribeThing", 10.0),
    ("UpdateThing", 10.0),
    ("AttachThingPrincipal", 15.0),
    ("AddThingToThingGroup", 60.0),
    ("ListThingPrincipals", 10.0),
    ("ListPrincipalThings", 10.0),
    ("ListThings", 10.0),
    ("ListAttachedPolicies", 10.0),
    ("DetachPolicy", 10.0),
    ("DetachThingPrincipal", 10.0),
    ("DeleteCertificate", 10.0),
    ("DeleteThing", 10.0),
];

/// Faults injected on every call, whatever its quota (rates are 0.0 to 1.0).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// `ThrottlingException` although within the quota.
    pub throttle: f64,
    /// 500 `InternalFailureException` or 503 `ServiceUnavailableException`.
    pub server_error: f64,
    /// The connection is dropped before an answer.
    pub drop: f64,
    /// The request is held for `hold` (past the SDK's attempt timeout), then dropped.
    pub timeout: f64,
    pub hold: Duration,
    /// Added to every call that is answered.
    pub latency: Duration,
}

/// What the model did with the calls of one API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub calls: u64,
    /// Throttled by the quota's token bucket.
    pub over_quota: u64,
    /// Throttled by the `throttle` rate.
    pub throttled: u64,
    pub server_errors: u64,
    pub dropped: u64,
    pub timed_out: u64,
    /// Passed on to the emulator.
    pub forwarded: u64,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket holds one second of the rate: the burst IoT Core allows.
    fn new(rate: f64) -> Self {
        Self {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    OverQuota,
    Throttled,
    ServerError(u16),
    Dropped,
    TimedOut,
    Forwarded,
}

/// One call that reached the service, as the critical-path benchmark lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The API (IoT's by route, DynamoDB's by its target, S3 as `S3 <method>`).
    pub api: String,
    /// Since the model was made.
    pub start: Duration,
    pub end: Duration,
}

#[derive(Debug)]
struct State {
    buckets: BTreeMap<&'static str, Bucket>,
    tallies: BTreeMap<&'static str, Tally>,
    timeline: Vec<Call>,
    /// xorshift64*: reproducible draws without a dependency.
    seed: u64,
}

/// The model; share it (`Arc`) between the clients of one account.
#[derive(Debug)]
pub struct FaultModel {
    faults: Faults,
    state: Mutex<State>,
    epoch: Instant,
}

impl FaultModel {
    /// `quotas` per IoT API (requests per second; others are unlimited), `faults` on every call.
    pub fn new(quotas: &[(&'static str, f64)], faults: Faults, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            faults,
            state: Mutex::new(State {
                buckets: quotas
                    .iter()
                    .map(|(api, rate)| (*api, Bucket::new(*rate)))
                    .collect(),
                tallies: BTreeMap::new(),
                timeline: Vec::new(),
                seed: seed | 1,
            }),
            epoch: Instant::now(),
        })
    }

    /// An SDK HTTP client that passes what the model lets through to `inner`.
    pub fn http_client(self: &Arc<Self>, inner: SharedHttpClient) -> SharedHttpClient {
        let model = Arc::clone(self);
        http_client_fn(move |settings, components| {
            SharedHttpConnector::new(Connector {
                model: Arc::clone(&model),
                inner: inner.http_connector(settings, components),
            })
        })
    }

    /// `sdk` with every call going through this model, and the adapters' own retries and
    /// timeouts (what the functions run with).
    pub fn sdk_config(self: &Arc<Self>, sdk: &SdkConfig) -> SdkConfig {
        sdk.to_builder()
            .http_client(self.http_client(https_client()))
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .build()
    }

    /// The tallies so far, per API.
    pub fn tallies(&self) -> BTreeMap<&'static str, Tally> {
        self.lock().tallies.clone()
    }

    /// Takes the calls forwarded since the last take, in the order they started.
    pub fn take_timeline(&self) -> Vec<Call> {
        let mut calls = std::mem::take(&mut self.lock().timeline);
        calls.sort_by_key(|c| c.start);
        calls
    }

    /// Every API's tallies added up.
    pub fn total(&self) -> Tally {
        self.tallies()
            .values()
            .fold(Tally::default(), |mut sum, t| {
                sum.calls += t.calls;
                sum.over_quota += t.over_quota;
                sum.throttled += t.throttled;
                sum.server_errors += t.server_errors;
                sum.dropped += t.dropped;
                sum.timed_out += t.timed_out;
                sum.forwarded += t.forwarded;
                sum
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decide(&self, api: &'static str) -> Fate {
        let mut state = self.lock();
        let mut draw = || {
            state.seed ^= state.seed >> 12;
            state.seed ^= state.seed << 25;
            state.seed ^= state.seed >> 27;
            (state.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        };
        let f = &self.faults;
        let fate = if draw() < f.drop {
            Fate::Dropped
        } else if draw() < f.timeout {
            Fate::TimedOut
        } else if draw() < f.server_error {
            Fate::ServerError(if draw() < 0.5 { 500 } else { 503 })
        } else if draw() < f.throttle {
            Fate::Throttled
        } else {
            Fate::Forwarded
        };
        // Only a call that reaches the service spends its quota.
        let reaches_service = matches!(fate, Fate::Forwarded | Fate::ServerError(_));
        let within_quota = !reaches_service || state.buckets.get_mut(api).is_none_or(Bucket::take);
        let fate = if within_quota { fate } else { Fate::OverQuota };
        let tally = state.tallies.entry(api).or_default();
        tally.calls += 1;
        match fate {
            Fate::OverQuota => tally.over_quota += 1,
            Fate::Throttled => tally.throttled += 1,
            Fate::ServerError(_) => tally.server_errors += 1,
            Fate::Dropped => tally.dropped += 1,
            Fate::TimedOut => tally.timed_out += 1,
            Fate::Forwarded => tally.forwarded += 1,
        }
        fate
    }
}

#[derive(Debug)]
struct Connector {
    model: Arc<FaultModel>,
    inner: SharedHttpConnector,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let api = operation(
            request.method(),
            request.uri(),
            request.headers().get("x-amz-target"),
        );
        let fate = self.model.decide(api);
        let faults = self.model.faults.clone();
        let inner = self.inner.clone();
        let label = label(api, &request);
        let model = Arc::clone(&self.model);
        let start = model.epoch.elapsed();
        HttpConnectorFuture::new(async move {
            match fate {
                Fate::Dropped => {
                    return Err(ConnectorError::io("connection reset (fault model)".into()));
                }
                Fate::TimedOut => {
                    tokio::time::sleep(faults.hold).await;
                    return Err(ConnectorError::io("no answer (fault model)".into()));
                }
                _ => {}
            }
            tokio::time::sleep(faults.latency).await;
            match fate {
                Fate::OverQuota | Fate::Throttled => Ok(error_response(
                    429,
                    "ThrottlingException",
                    "Rate exceeded (fault model)",
                )),
                Fate::ServerError(500) => Ok(error_response(
                    500,
                    "InternalFailureException",
                    "internal failure (fault model)",
                )),
                Fate::ServerError(_) => Ok(error_response(
                    503,
                    "ServiceUnavailableException",
                    "service unavailable (fault model)",
                )),
                _ => {
                    let answer = inner.call(request).await;
                    let end = model.epoch.elapsed();
                    let call = Call {
                        api: label,
                        start,
                        end,
                    };
                    model.lock().timeline.push(call);
                    answer
                }
            }
        })
    }
}

/// A readable name for a call: the IoT API, the JSON protocol's operation (`GetItem`), or
/// `S3 GET` for the rest.
fn label(api: &'static str, request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if api == "OtherIot" {
        return format!("S3 {}", request.method());
    }
    api.to_owned()
}

/// An AWS JSON error answer, as IoT Core sends it.
fn error_response(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = format!(r#"{{"message":"{message}"}}"#);
    let mut response = HttpResponse::new(
        status.try_into().expect("a valid status"),
        SdkBody::from(body),
    );
    response
        .headers_mut()
        .insert("x-amzn-ErrorType", code.to_owned());
    response
        .headers_mut()
        .insert("content-type", "application/json");
    response
}

/// The API a request calls: IoT's REST routes by method and path; DynamoDB, Secrets Manager
/// and other JSON protocols by `X-Amz-Target`.
fn operation(method: &str, uri: &str, target: Option<&str>) -> &'static str {
    if target.is_some() {
        return "OtherService";
    }
    let path = uri
        .split_once("://")
        .map_or(uri, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let path = path.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["certificates", _]) => "DescribeCertificate",
        ("PUT", ["certificates", _]) => "UpdateCertificate",
        ("DELETE", ["certificates", _]) => "DeleteCertificate",
        ("GET", ["cacertificate", _]) => "DescribeCACertificate",
        ("GET", ["cacertificates"]) => "ListCACertificates",
        ("PUT", ["target-policies", _]) => "AttachPolicy",
        ("POST", ["target-policies", _]) => "DetachPolicy",
        ("POST", ["things", _]) => "CreateThing",
        ("GET", ["things", _]) => "DescribeThing",
        ("PATCH", ["things", _]) => "UpdateThing",
        ("DELETE", ["things", _]) => "DeleteThing",
        ("GET", ["things"]) => "ListThings",
        ("PUT", ["things", _, "principals"]) => "AttachThingPrincipal",
        ("DELETE", ["things", _, "principals"]) => "DetachThingPrincipal",
        ("GET", ["things", _, "principals"]) => "ListThingPrincipals",
        ("GET", ["principals", "things"]) => "ListPrincipalThings",
        ("POST", ["attached-policies", _]) => "ListAttachedPolicies",
        ("PUT", ["thing-groups", "addThingToThingGroup"]) => "AddThingToThingGroup",
        ("GET", ["policies", _]) => "GetPolicy",
        _ => "OtherIot",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_apis() {
        let cases = [
            (
                "GET",
                "https://iot.eu-west-1.amazonaws.com/certificates/abc",
                "DescribeCertificate",
            ),
            (
                "PUT",
                "http://127.0.0.1:4566/certificates/abc?newStatus=ACTIVE",
                "UpdateCertificate",
            ),
            ("GET", "http://h/cacertificate/ca1", "DescribeCACertificate"),
            (
                "PUT",
                "http://h/target-policies/jitr-device",
                "AttachPolicy",
            ),
            ("POST", "http://h/things/sensor-1", "CreateThing"),
            (
                "PUT",
                "http://h/things/sensor-1/principals",
                "AttachThingPrincipal",
            ),
            (
                "GET",
                "http://h/things/sensor-1/principals",
                "ListThingPrincipals",
            ),
            (
                "PUT",
                "http://h/thing-groups/addThingToThingGroup",
                "AddThingToThingGroup",
            ),
            (
                "GET",
                "http://h/things?attributeName=a&attributeValue=b",
                "ListThings",
            ),
        ];
        for (method, uri, api) in cases {
            assert_eq!(operation(method, uri, None), api, "{method} {uri}");
        }
        assert_eq!(
            operation("POST", "http://h/", Some("DynamoDB_20120810.GetItem")),
            "OtherService"
        );
    }

    #[test]
    fn a_bucket_allows_a_second_of_its_rate_then_throttles() {
        let model = FaultModel::new(&[("DescribeCertificate", 10.0)], Faults::default(), 7);
        let fates: Vec<Fate> = (0..12)
            .map(|_| model.decide("DescribeCertificate"))
            .collect();
        assert_eq!(fates.iter().filter(|f| **f == Fate::Forwarded).count(), 10);
        assert_eq!(fates[10..], [Fate::OverQuota, Fate::OverQuota]);
        assert_eq!(
            model.decide("CreateThing"),
            Fate::Forwarded,
            "no quota, no limit"
        );
        let tally = model.tallies()["DescribeCertificate"];
        assert_eq!(
            (tally.calls, tally.over_quota, tally.forwarded),
            (12, 2, 10)
        );
    }

    #[test]
    fn fault_rates_are_honoured() {
        let faults = Faults {
            throttle: 0.3,
            server_error: 0.05,
            ..Faults::default()
        };
        let model = FaultModel::new(&[], faults, 42);
        for _ in 0..10_000 {
            model.decide("CreateThing");
        }
        let t = model.total();
        let share = |n: u64| n as f64 / t.calls as f64;
        assert!((0.26..0.31).contains(&share(t.throttled)), "{t:?}");
        assert!((0.04..0.06).contains(&share(t.server_errors)), "{t:?}");
        assert_eq!(t.dropped + t.timed_out + t.over_quota, 0);
    }
}
