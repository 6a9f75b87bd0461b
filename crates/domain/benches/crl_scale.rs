//! A fleet-sized revocation list in one container (issue 11, item 6): a CRL of 1,000,000
//! entries (random 20-byte serials, as CAs issue them) is loaded and verified, looked up, and
//! refreshed through the container's cache with its ETag unchanged and changed.
//!
//! Memory is measured as peak RSS above the start, each case in a fresh process (this bench
//! runs itself again), so memory freed by an earlier case cannot hide a peak; the whole
//! function's peak RSS with the list loaded is measured on the real binary by `bench-lambda`. With `BENCH_ROWS=<file>` the figures are also
//! appended there as rows of the `make bench` table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/rows.rs"]
mod rows;
use rows::Rows;

use jitr_domain::certificate::CaCertificate;
use jitr_domain::revocation::{RevocationCache, RevocationList};
use jitr_domain::source::{FetchError, Fetched, Fetcher, ObjectSource, Validator};
use jitr_pki::Ca;
use time::{Duration as Span, OffsetDateTime};

const ENTRIES: usize = 1_000_000;
const LOOKUPS: usize = 1_000_000;
const MIB: f64 = 1024.0 * 1024.0;

/// A line of /proc/self/status, in MiB (`VmRSS`, `VmHWM`).
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

/// Runs `f` and returns its result with the peak RSS above the RSS before, in MiB. Linux
/// resets the peak (VmHWM) to the current RSS when 5 is written to clear_refs.
fn peak_above<T>(f: impl FnOnce() -> T) -> (T, f64) {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status_mib("VmRSS:");
    let out = f();
    (out, status_mib("VmHWM:") - base)
}

/// Serves one scripted answer per fetch, as S3 would (the body moves into the cache).
struct Source(std::sync::Mutex<Vec<Fetched>>);

impl Fetcher for Source {
    async fn fetch(&self, _: &ObjectSource, _: Option<&Validator>) -> Result<Fetched, FetchError> {
        Ok(self.0.lock().unwrap().remove(0))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") => return load(Path::new(&args[1]), Path::new(&args[2])),
        Some("refresh") => return refresh(Path::new(&args[1]), &args[2..]),
        _ => {}
    }
    let ca = Ca::new("Fleet CA", "Acme").unwrap();
    let ca_certificate = CaCertificate::from_pem(&ca.pem).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut serial = || {
        let mut s: Vec<u8> = (0..20).map(|_| random() as u8).collect();
        s[0] = 0x01 | (s[0] & 0x7f); // positive, 20 bytes, as RFC 5280 CAs issue
        s
    };
    let generated = Instant::now();
    let serials: Vec<Vec<u8>> = (0..ENTRIES).map(|_| serial()).collect();
    let window = (now - Span::hours(1), now + Span::days(1));
    let pem = ca.crl_numbered(&serials, 1, window.0, window.1).unwrap();
    let der =
        jitr_domain::certificate::pem_to_der(&pem.replace("X509 CRL", "CERTIFICATE")).unwrap();
    let newer_pem = ca.crl_numbered(&serials, 2, window.0, window.1).unwrap();
    println!(
        "CRL: {ENTRIES} entries, {:.1} MiB DER, {:.1} MiB PEM (generated in {:.1?})",
        der.len() as f64 / MIB,
        pem.len() as f64 / MIB,
        generated.elapsed()
    );
    let dir = std::env::temp_dir().join(format!("jitr-crl-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let ca_path = file("ca.pem", ca.pem.as_bytes());
    let der_path = file("v1.der", &der);
    let pem_path = file("v1.pem", pem.as_bytes());
    let newer_path = file("v2.pem", newer_pem.as_bytes());
    drop(newer_pem);

    // Load and verify: the median of 5, DER and PEM.
    let time_of = |bytes: &[u8]| {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let list = RevocationList::parse_owned(bytes.to_vec(), &ca_certificate).unwrap();
                let elapsed = t.elapsed();
                assert_eq!(list.len(), ENTRIES);
                elapsed
            })
            .collect();
        times.sort_unstable();
        times[2].as_secs_f64()
    };
    let (der_s, pem_s) = (time_of(&der), time_of(pem.as_bytes()));
    println!("load + verify: DER median {der_s:.3} s, PEM median {pem_s:.3} s");
    let list = RevocationList::parse_owned(der.clone(), &ca_certificate).unwrap();
    let held = list.heap_bytes() as f64 / MIB;

    // Lookups: half revoked serials, half not.
    let probes: Vec<Vec<u8>> = (0..LOOKUPS)
        .map(|i| {
            if i % 2 == 0 {
                serials[i % ENTRIES].clone()
            } else {
                serial()
            }
        })
        .collect();
    let mut hits = 0;
    let started = Instant::now();
    for probe in &probes {
        hits += usize::from(list.is_revoked(black_box(probe)));
    }
    let lookup_ns = started.elapsed().as_secs_f64() * 1e9 / LOOKUPS as f64;
    assert_eq!(hits, LOOKUPS / 2, "every revoked serial found, no other");
    println!("lookup: {lookup_ns:.0} ns per serial (mean of {LOOKUPS}, half revoked)");
    drop((list, probes, serials));

    drop((der, pem));

    // Memory, each in a fresh process so nothing freed earlier hides a peak.
    let (der_peak, _) = child(&["load", path(&ca_path), path(&der_path)]);
    let (pem_peak, _) = child(&["load", path(&ca_path), path(&pem_path)]);
    println!(
        "memory: the list holds {held:.1} MiB; loading peaks at +{der_peak:.1} MiB RSS from DER, +{pem_peak:.1} MiB from PEM (the body included)"
    );
    let (unchanged_peak, changed) = child(&[
        "refresh",
        path(&ca_path),
        path(&der_path),
        path(&newer_path),
    ]);
    let (changed_peak, after) = changed.unwrap();
    let body = std::fs::metadata(&newer_path).unwrap().len() as f64 / MIB;
    println!(
        "refresh: unchanged +{unchanged_peak:.2} MiB RSS at peak; changed +{changed_peak:.1} MiB at peak (its {body:.1} MiB PEM body and the new list beside the held one), {after:+.1} MiB once swapped"
    );
    std::fs::remove_dir_all(&dir).ok();

    let mut rows = Rows::default();
    rows.add(
        "CRL 1M entries: load + verify (DER)",
        "<= 1 s",
        format!("{der_s:.3} s"),
        der_s <= 1.0,
    );
    rows.add(
        "CRL 1M entries: load + verify (PEM)",
        "<= 1 s",
        format!("{pem_s:.3} s"),
        pem_s <= 1.0,
    );
    rows.add(
        "CRL 1M entries: lookup",
        "<= 1 µs",
        format!("{lookup_ns:.0} ns"),
        lookup_ns <= 1000.0,
    );
    rows.add(
        "CRL 1M entries: refresh, ETag unchanged",
        "no second copy",
        format!("+{unchanged_peak:.2} MiB"),
        unchanged_peak < 1.0,
    );
    rows.add(
        "CRL 1M entries: refresh, changed",
        "only body + new list",
        format!("+{changed_peak:.1} MiB (body {body:.1} + list {held:.1})"),
        changed_peak <= body + held + 2.0 && after < 2.0,
    );
    rows.save();
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs this bench again with `args`; its last line is one or three numbers.
fn child(args: &[&str]) -> (f64, Option<(f64, f64)>) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let numbers: Vec<f64> = (text.lines().last().unwrap().split_whitespace())
        .map(|n| n.parse().unwrap())
        .collect();
    (
        numbers[0],
        (numbers.len() == 3).then(|| (numbers[1], numbers[2])),
    )
}

fn ca_of(path: &Path) -> CaCertificate {
    CaCertificate::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Child: reads the list as a fetch would and parses it; prints the peak RSS above the start.
fn load(ca: &Path, list: &Path) {
    let ca = ca_of(ca);
    let (list, peak) = peak_above(|| {
        let body = std::fs::read(list).unwrap();
        RevocationList::parse_owned(body, &ca).unwrap()
    });
    assert_eq!(list.len(), ENTRIES);
    println!("{peak:.2}");
}

/// Child: loads the first list through the cache, then refreshes it unchanged and changed;
/// prints the peak above each start and the RSS change once the new list replaced the old.
fn refresh(ca: &Path, lists: &[String]) {
    let ca = ca_of(ca);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = RevocationCache::new(
        ObjectSource::S3 {
            bucket: "crl".into(),
            key: "fleet.crl".into(),
        },
        "bench-ca",
    );
    let t = OffsetDateTime::now_utc().unix_timestamp();
    let first = Fetched::body(std::fs::read(&lists[0]).unwrap(), Some("\"v1\""));
    let fetcher = Source(std::sync::Mutex::new(vec![first]));
    drop(
        runtime
            .block_on(cache.get(&fetcher, &jitr_domain::ledger::NoLedger, &ca, t))
            .unwrap(),
    );
    fetcher.0.lock().unwrap().push(Fetched::NotModified);
    let (kept, unchanged) = peak_above(|| {
        runtime.block_on(cache.refresh(&fetcher, &jitr_domain::ledger::NoLedger, &ca, t + 1))
    });
    assert_eq!(kept.unwrap().crl_number().as_deref(), Some("1"));
    let before = status_mib("VmRSS:");
    let (taken, changed) = peak_above(|| {
        let body = std::fs::read(&lists[1]).unwrap();
        fetcher
            .0
            .lock()
            .unwrap()
            .push(Fetched::body(body, Some("\"v2\"")));
        runtime.block_on(cache.refresh(&fetcher, &jitr_domain::ledger::NoLedger, &ca, t + 2))
    });
    assert_eq!(taken.unwrap().crl_number().as_deref(), Some("2"));
    let after = status_mib("VmRSS:") - before;
    println!("{unchanged:.2} {changed:.2} {after:.2}");
}
