//! The in-process decision path for one event: parse the event, decode the device certificate
//! and verify it against its CA, look its serial up in a 100,000-entry CRL, derive the thing
//! name and attributes. Prints the median (and p90/p99) over many timed events.
//!
//! A plain harness rather than criterion: the figure we quote is a median per event, and this
//! prints exactly that.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "support/rows.rs"]
mod rows;
use rows::Rows;

use jitr_domain::Config;
use jitr_domain::certificate::CaCertificate;
use jitr_domain::decision::{Decision, Facts, RevocationFacts, decide};
use jitr_domain::event::RegistrationEvent;
use jitr_domain::registry::{CaDescription, CertificateDescription, CertificateStatus};
use jitr_domain::revocation::RevocationList;
use jitr_pki::{Ca, DeviceSpec};
use time::{Duration as Span, OffsetDateTime};

const CRL_ENTRIES: usize = 100_000;
const WARMUP: usize = 200;
const SAMPLES: usize = 3_000;

fn main() {
    let ca = Ca::new("Bench CA", "Acme").unwrap();
    let device = ca.issue(&DeviceSpec::named("bench-device-0001")).unwrap();
    let ca_certificate = CaCertificate::from_pem(&ca.pem).unwrap();
    let ca_description = CaDescription {
        id: ca.id(),
        active: true,
        pem: ca.pem.clone(),
    };

    let started = Instant::now();
    let serials: Vec<Vec<u8>> = (0..CRL_ENTRIES as u64)
        .map(|n| (n + 1_000_000).to_be_bytes().to_vec())
        .collect();
    let now = OffsetDateTime::now_utc();
    let crl_pem = ca
        .crl(&serials, now - Span::hours(1), now + Span::days(1))
        .unwrap();
    let list = RevocationList::parse(crl_pem.as_bytes(), &ca_certificate).unwrap();
    let lists = [std::sync::Arc::new(list.clone())];
    assert_eq!(list.len(), CRL_ENTRIES);
    println!(
        "CRL: {CRL_ENTRIES} entries, {} KiB PEM, built and verified once in {:?}",
        crl_pem.len() / 1024,
        started.elapsed()
    );

    let certificate = CertificateDescription {
        id: device.id.clone(),
        arn: format!("arn:aws:iot:eu-west-1:123456789012:cert/{}", device.id),
        status: CertificateStatus::PendingActivation,
        pem: device.cert_pem.clone(),
        ca_certificate_id: Some(ca.id()),
    };
    let event_bytes = serde_json::to_vec(&serde_json::json!({
        "certificateId": device.id, "caCertificateId": ca.id(), "timestamp": 1_763_800_000_000_i64,
        "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
        "certificateRegistrationTimestamp": null, "sourceIp": "198.51.100.7"
    }))
    .unwrap();
    let config = Config::with_policy("device");
    let profile = config.default_profile();
    let unix_now = now.unix_timestamp();

    let one_event = || {
        let event = RegistrationEvent::from_slice(black_box(&event_bytes)).unwrap();
        let facts = Facts {
            certificate: &certificate,
            ca: Some(&ca_description),
            ca_certificate: Some(&ca_certificate),
            profile: Some(&profile),
            revocation: RevocationFacts::checked(&lists),
            now: unix_now,
        };
        decide(&event, &facts, &config).unwrap()
    };
    assert!(
        matches!(one_event(), Decision::Provision(_)),
        "the benchmark must run the admit path"
    );

    // Where the time goes, stage by stage (medians), then the whole path.
    let serial = jitr_domain::certificate::inspect(&device.cert_pem, &ca_certificate, unix_now)
        .unwrap()
        .serial;
    let stages: [(&str, &dyn Fn()); 3] = [
        ("  event parse + validation", &|| {
            drop(black_box(RegistrationEvent::from_slice(black_box(
                &event_bytes,
            ))))
        }),
        ("  certificate decode + checks + signature", &|| {
            drop(black_box(jitr_domain::certificate::inspect(
                black_box(&device.cert_pem),
                &ca_certificate,
                unix_now,
            )))
        }),
        ("  CRL lookup", &|| {
            black_box(list.is_revoked(black_box(&serial)));
        }),
    ];
    for (name, stage) in stages {
        let t = measure(stage);
        println!("{name}: median {:.2} µs", t.median);
    }
    let whole = measure(&|| drop(black_box(one_event())));
    println!(
        "decision path per event (EC P-256 device, {CRL_ENTRIES}-entry CRL): median {:.1} µs, p90 {:.1} µs, p99 {:.1} µs over {SAMPLES} events",
        whole.median, whole.p90, whole.p99
    );
    // For `make bench`'s table: the in-process work must stay far below one AWS round trip.
    let mut rows = Rows::default();
    rows.add(
        "Decision path per event (parse, verify, 100k-entry CRL, name): median",
        &format!("<= {TARGET_MICROS} µs"),
        format!("{:.1} µs (p99 {:.1} µs)", whole.median, whole.p99),
        whole.median <= TARGET_MICROS,
    );
    rows.save();
}

/// The decision path's budget per event: a hundredth of a fast AWS call.
const TARGET_MICROS: f64 = 100.0;

struct Stats {
    median: f64,
    p90: f64,
    p99: f64,
}

/// Runs `f` WARMUP times, then SAMPLES timed times; quantiles in microseconds.
fn measure(f: &dyn Fn()) -> Stats {
    for _ in 0..WARMUP {
        f();
    }
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((SAMPLES as f64 * q) as usize).min(SAMPLES - 1)].as_secs_f64() * 1e6;
    Stats {
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}
