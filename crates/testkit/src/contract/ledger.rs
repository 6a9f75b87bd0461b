//! The ledger port's contract, run against the in-memory adapter and, in `tests/`, against
//! DynamoDB on the emulator.

use jitr_domain::ledger::{
    DeviceDecision, DeviceState, EventStamp, HistoryEntry, Holdings, LatestCertificate, Ledger,
    Recorded, Revoked, SerialEntry,
};
use jitr_domain::registry::RegistryErrorKind;

/// Runs every check on `ledger`; `unique` keeps keys apart from other runs on a shared table.
pub async fn run_all<L: Ledger>(ledger: &L, unique: &str) -> Result<(), String> {
    serial_index(ledger, unique).await?;
    decisions_are_ordered(ledger, unique).await?;
    certificates_accumulate(ledger, unique).await?;
    history_is_kept_in_time_order(ledger, unique).await?;
    admissions_are_remembered_until_forgotten(ledger, unique).await?;
    list_marks_only_rise(ledger, unique).await?;
    document_generations_count_announcements(ledger, unique).await?;
    a_cas_index_is_paged_in_serial_order(ledger, unique).await
}

/// Issue 18, defect 2: a CA's serial index is read a page at a time, in serial order, each
/// entry once, and never another CA's.
async fn a_cas_index_is_paged_in_serial_order<L: Ledger>(
    ledger: &L,
    unique: &str,
) -> Result<(), String> {
    use jitr_domain::ledger::INDEX_PAGE_ENTRIES;
    let ca = format!("walk-{unique}");
    let total = INDEX_PAGE_ENTRIES + 3;
    let entry = |ca: &str, n: usize| SerialEntry {
        ca_certificate_id: ca.to_owned(),
        serial_hex: format!("{n:06x}"),
        certificate_id: format!("cert-{n}"),
        thing_name: format!("thing-{n}"),
        admitted_at: 1_800_000_000,
        revoked: None,
    };
    for n in 0..total {
        ledger
            .index_certificate(&entry(&ca, n))
            .await
            .map_err(|e| format!("index_certificate: {e}"))?;
    }
    ledger
        .index_certificate(&entry(&format!("other-{unique}"), 1))
        .await
        .map_err(|e| format!("index_certificate: {e}"))?;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ledger
            .serial_index_page(&ca, after.as_deref())
            .await
            .map_err(|e| format!("serial_index_page: {e}"))?;
        pages += 1;
        seen.extend(page.entries.iter().map(|e| e.serial_hex.clone()));
        match page.after {
            Some(next) => after = Some(next),
            None => break,
        }
        if pages > 3 {
            return Err("more pages than entries allow".into());
        }
    }
    let expected: Vec<String> = (0..total).map(|n| format!("{n:06x}")).collect();
    if seen != expected {
        return Err(format!(
            "{} entries in {pages} pages, first {:?}, last {:?}",
            seen.len(),
            seen.first(),
            seen.last()
        ));
    }
    Ok(())
}

/// Issue 18, defect 11: a document's generation starts at 0 and each announcement raises it by
/// one, for every reader.
async fn document_generations_count_announcements<L: Ledger>(
    ledger: &L,
    unique: &str,
) -> Result<(), String> {
    let document = format!("s3://pki/{unique}/profiles.json");
    let read = |document: String| async move {
        ledger
            .document_generation(&document)
            .await
            .map_err(|e| format!("document_generation: {e}"))
    };
    if read(document.clone()).await? != 0 {
        return Err("a document never announced has a generation".into());
    }
    for expected in 1..=2 {
        let bumped = ledger
            .bump_document_generation(&document)
            .await
            .map_err(|e| format!("bump_document_generation: {e}"))?;
        let read_back = read(document.clone()).await?;
        if (bumped, read_back) != (expected, expected) {
            return Err(format!(
                "bump {expected}: answered {bumped}, read {read_back}"
            ));
        }
    }
    if read(format!("{document}.other")).await? != 0 {
        return Err("another document's generation moved".into());
    }
    Ok(())
}

/// Issue 18, defect 7: the newest list accepted per (source, CA) only moves forward, by
/// cRLNumber then thisUpdate (an equal number issued earlier is older), and each CA's mark is
/// its own.
async fn list_marks_only_rise<L: Ledger>(ledger: &L, unique: &str) -> Result<(), String> {
    use jitr_domain::revocation::ListMark;
    let source = format!("https://pki.example/{unique}/ca.crl");
    let mark = |number: Option<&[u8]>, this_update| ListMark {
        crl_number: number.map(<[u8]>::to_vec),
        this_update,
    };
    let raise = |ca: &'static str, m: ListMark| {
        let source = source.clone();
        async move {
            ledger
                .raise_list_mark(&source, ca, &m)
                .await
                .map_err(|e| format!("raise_list_mark {m:?}: {e}"))
        }
    };
    let steps = [
        // (what is offered, what is recorded after it)
        (mark(Some(&[5]), 100), mark(Some(&[5]), 100)),
        (mark(Some(&[4]), 900), mark(Some(&[5]), 100)),
        (mark(Some(&[5]), 50), mark(Some(&[5]), 100)),
        (mark(Some(&[5]), 100), mark(Some(&[5]), 100)),
        (mark(Some(&[5]), 200), mark(Some(&[5]), 200)),
        (mark(Some(&[1, 0]), 150), mark(Some(&[1, 0]), 150)),
        (mark(Some(&[0xff]), 999), mark(Some(&[1, 0]), 150)),
        (mark(None, 140), mark(Some(&[1, 0]), 150)),
        (mark(None, 300), mark(None, 300)),
        (mark(Some(&[7]), 250), mark(None, 300)),
        (mark(Some(&[7]), 301), mark(Some(&[7]), 301)),
    ];
    for (offered, expected) in steps {
        let recorded = raise("ca-a", offered.clone()).await?;
        if recorded != expected {
            return Err(format!(
                "offered {offered:?}: recorded {recorded:?}, expected {expected:?}"
            ));
        }
    }
    let other = raise("ca-b", mark(Some(&[1]), 1)).await?;
    if other != mark(Some(&[1]), 1) {
        return Err(format!("another CA's mark is its own: {other:?}"));
    }
    let read = |ca: &'static str| {
        let source = source.clone();
        async move {
            ledger
                .list_mark(&source, ca)
                .await
                .map_err(|e| format!("list_mark: {e}"))
        }
    };
    let (a, none) = (read("ca-a").await?, read("ca-none").await?);
    if a != Some(mark(Some(&[7]), 301)) || none.is_some() {
        return Err(format!("list_mark read {a:?} and {none:?}"));
    }
    sync_progress_round_trips(ledger, &source).await
}

/// Issue 18, defects 1 and 2: the sync's progress per (source, CA) is kept where any container
/// reads it.
async fn sync_progress_round_trips<L: Ledger>(ledger: &L, source: &str) -> Result<(), String> {
    use jitr_domain::revocation::{ListMark, SyncProgress};
    let read = || async {
        ledger
            .sync_progress(source, "ca-a")
            .await
            .map_err(|e| format!("sync_progress: {e}"))
    };
    if let Some(found) = read().await? {
        return Err(format!("progress before any run: {found:?}"));
    }
    for progress in [
        SyncProgress {
            mark: ListMark {
                crl_number: Some(vec![1, 0]),
                this_update: 150,
            },
            next: 176_000,
            walk_after: None,
            complete: false,
        },
        SyncProgress {
            mark: ListMark {
                crl_number: None,
                this_update: 300,
            },
            next: 0,
            walk_after: Some("0a1b/3f00".into()),
            complete: false,
        },
    ] {
        ledger
            .save_sync_progress(source, "ca-a", &progress)
            .await
            .map_err(|e| format!("save_sync_progress: {e}"))?;
        let found = read().await?;
        if found.as_ref() != Some(&progress) {
            return Err(format!("saved {progress:?}, read {found:?}"));
        }
    }
    Ok(())
}

async fn admissions_are_remembered_until_forgotten<L: Ledger>(
    ledger: &L,
    unique: &str,
) -> Result<(), String> {
    let id = format!("{unique}-admitted");
    let read = |what: &'static str| {
        let id = id.clone();
        async move {
            ledger
                .admitted(&id)
                .await
                .map_err(|e| format!("{what}: {e}"))
        }
    };
    if read("an unknown certificate").await?.is_some() {
        return Err("a certificate never admitted reads as admitted".into());
    }
    ledger
        .record_admission(&id, 1_800_000_000)
        .await
        .map_err(|e| e.to_string())?;
    let admitted = read("after record_admission").await?;
    if admitted != Some(1_800_000_000) {
        return Err(format!("record_admission then admitted: {admitted:?}"));
    }
    ledger
        .forget_admission(&id)
        .await
        .map_err(|e| e.to_string())?;
    let forgotten = read("after forget_admission").await?;
    if forgotten.is_some() {
        return Err(format!("a forgotten admission still reads {forgotten:?}"));
    }
    Ok(())
}

fn kind(recorded: &Recorded) -> &'static str {
    match recorded {
        Recorded::New(_) => "New",
        Recorded::Unfinished(_) => "Unfinished",
        Recorded::Stale(_) => "Stale",
        Recorded::NotKept => "NotKept",
    }
}

async fn decisions_are_ordered<L: Ledger>(ledger: &L, unique: &str) -> Result<(), String> {
    let thing = format!("device-{unique}");
    let decision = |state, action: &str, at_ms, id: &str| DeviceDecision {
        state,
        action: action.into(),
        event: EventStamp {
            at_ms,
            id: id.into(),
        },
    };
    let device = || {
        let thing = thing.clone();
        async move {
            ledger
                .device(&thing)
                .await
                .map_err(|e| format!("device: {e}"))
        }
    };
    if device().await?.is_some() {
        return Err("an unknown device has a record".into());
    }
    let rejected = decision(DeviceState::Denied, "deactivate", 2_000, "e2");
    let accepted_late = decision(DeviceState::Allowed, "activate", 1_000, "e1");
    let steps = [
        (&rejected, "New"),
        (&rejected, "Unfinished"),
        (&accepted_late, "Stale"),
    ];
    for (step, (incoming, expected)) in steps.iter().enumerate() {
        let got = ledger
            .record_decision(&thing, incoming)
            .await
            .map_err(|e| format!("record_decision: {e}"))?;
        if kind(&got) != *expected {
            return Err(format!("step {step}: expected {expected}, got {got:?}"));
        }
    }
    ledger
        .mark_applied(&thing, &rejected.event)
        .await
        .map_err(|e| format!("mark_applied: {e}"))?;
    // Marking an event that is not the recorded one changes nothing.
    ledger
        .mark_applied(&thing, &accepted_late.event)
        .await
        .map_err(|e| format!("mark_applied of an older event: {e}"))?;
    let record = device().await?.ok_or("the decision was not recorded")?;
    if record.state() != Some(DeviceState::Denied)
        || record.applied_event_id.as_deref() != Some("e2")
        || record.decision.as_ref().map(|d| d.action.as_str()) != Some("deactivate")
    {
        return Err(format!("recorded: {record:?}"));
    }
    let repeat = ledger
        .record_decision(&thing, &rejected)
        .await
        .map_err(|e| format!("record_decision: {e}"))?;
    if kind(&repeat) != "Stale" {
        return Err(format!("an applied event repeated: {repeat:?}"));
    }
    // Same millisecond: the larger id wins, whatever the arrival order.
    let tie = decision(DeviceState::Decommissioned, "decommission", 2_000, "e3");
    match ledger.record_decision(&thing, &tie).await {
        Ok(Recorded::New(record)) if record.state() == Some(DeviceState::Decommissioned) => {}
        other => return Err(format!("a same-time event with a larger id: {other:?}")),
    }
    // Issue 18: a sender reuses the id e3 for a newer event. The older event's run marking
    // itself applied must not mark the newer one: its redelivery is unfinished, not stale.
    let reused = decision(DeviceState::Allowed, "activate", 3_000, "e3");
    let recorded = ledger
        .record_decision(&thing, &reused)
        .await
        .map_err(|e| format!("record_decision: {e}"))?;
    if kind(&recorded) != "New" {
        return Err(format!("a newer event reusing an id: {recorded:?}"));
    }
    ledger
        .mark_applied(&thing, &tie.event)
        .await
        .map_err(|e| format!("mark_applied: {e}"))?;
    match ledger.record_decision(&thing, &reused).await {
        Ok(Recorded::Unfinished(_)) => Ok(()),
        other => Err(format!(
            "the older event with the same id marked the newer one applied: {other:?}"
        )),
    }
}

async fn certificates_accumulate<L: Ledger>(ledger: &L, unique: &str) -> Result<(), String> {
    let thing = format!("rotating-{unique}");
    let latest = |id: &str, not_before| LatestCertificate {
        certificate_id: id.into(),
        not_before,
    };
    let add = |holdings: Holdings| {
        let thing = thing.clone();
        async move {
            ledger
                .add_certificates(&thing, &holdings)
                .await
                .map_err(|e| format!("add_certificates: {e}"))
        }
    };
    add(Holdings {
        held: vec!["c1".into()],
        latest: Some(latest("c1", 100)),
        ..Holdings::default()
    })
    .await?;
    add(Holdings {
        held: vec!["c2".into()],
        retired: vec!["c1".into()],
        latest: Some(latest("c2", 200)),
        ..Holdings::default()
    })
    .await?;
    // An older certificate is held but does not become the latest.
    add(Holdings {
        held: vec!["c0".into()],
        latest: Some(latest("c0", 50)),
        ..Holdings::default()
    })
    .await?;
    // A certificate refused for the device's standing: kept apart from the held ones.
    add(Holdings {
        refused: vec!["r1".into()],
        ..Holdings::default()
    })
    .await?;
    let record = ledger
        .device(&thing)
        .await
        .map_err(|e| format!("device: {e}"))?
        .ok_or("no record")?;
    let ids = |set: &std::collections::BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
    if ids(&record.certificates) != ["c0", "c1", "c2"]
        || ids(&record.retired) != ["c1"]
        || ids(&record.refused) != ["r1"]
        || record.latest != Some(latest("c2", 200))
        || record.decision.is_some()
    {
        return Err(format!("holdings: {record:?}"));
    }
    Ok(())
}

async fn history_is_kept_in_time_order<L: Ledger>(ledger: &L, unique: &str) -> Result<(), String> {
    let thing = format!("audited-{unique}");
    let entry = |at_ms, what: &str| HistoryEntry {
        at_ms,
        source: "registration".into(),
        what: what.into(),
        certificate_id: Some("c1".into()),
        reason: None,
        event_id: None,
    };
    for e in [
        entry(3_000, "Rejected"),
        entry(1_000, "Activated"),
        entry(3_000, "Rejected"),
    ] {
        ledger
            .append_history(&thing, &e)
            .await
            .map_err(|e| format!("append_history: {e}"))?;
    }
    let lifecycle = HistoryEntry {
        source: "lifecycle:webhook".into(),
        reason: Some("stolen".into()),
        event_id: Some("w-1".into()),
        certificate_id: None,
        ..entry(2_000, "deactivate")
    };
    ledger
        .append_history(&thing, &lifecycle)
        .await
        .map_err(|e| format!("append_history: {e}"))?;
    let history = ledger
        .history(&thing)
        .await
        .map_err(|e| format!("history: {e}"))?;
    let expected = [
        entry(1_000, "Activated"),
        lifecycle,
        entry(3_000, "Rejected"),
    ];
    if history != expected {
        return Err(format!("history: {history:?}"));
    }
    if !ledger
        .history(&format!("other-{unique}"))
        .await
        .map_err(|e| format!("history: {e}"))?
        .is_empty()
    {
        return Err("another device shares the history".into());
    }
    Ok(())
}

async fn serial_index<L: Ledger>(ledger: &L, unique: &str) -> Result<(), String> {
    let ca = format!("ca-{unique}");
    let entry = |certificate: &str, thing: &str, at: i64| SerialEntry {
        ca_certificate_id: ca.clone(),
        serial_hex: "0a0b".into(),
        certificate_id: certificate.into(),
        thing_name: thing.into(),
        admitted_at: at,
        revoked: None,
    };
    let found = |r: Result<Vec<SerialEntry>, jitr_domain::ledger::LedgerError>| {
        r.map_err(|e| format!("Query: {e}")).map(|mut v| {
            v.sort_by(|a, b| a.certificate_id.cmp(&b.certificate_id));
            v
        })
    };
    if !found(ledger.certificates_with_serial(&ca, "0a0b").await)?.is_empty() {
        return Err("an unknown serial has entries".into());
    }
    let first = entry("cert-1", "thing-1", 100);
    ledger
        .index_certificate(&first)
        .await
        .map_err(|e| format!("index: {e}"))?;
    ledger
        .index_certificate(&entry("cert-1", "thing-1", 200))
        .await
        .map_err(|e| format!("index again: {e}"))?;
    ledger
        .index_certificate(&entry("cert-2", "thing-2", 300))
        .await
        .map_err(|e| format!("index a second certificate: {e}"))?;
    let entries = found(ledger.certificates_with_serial(&ca, "0a0b").await)?;
    if entries != [first.clone(), entry("cert-2", "thing-2", 300)] {
        return Err(format!(
            "index is idempotent and keeps admitted_at: {entries:?}"
        ));
    }
    if !found(ledger.certificates_with_serial(&ca, "0a0c").await)?.is_empty() {
        return Err("another serial shares the entries".into());
    }
    let revoked = Revoked {
        at: 400,
        by: "crl:test #2".into(),
    };
    ledger
        .mark_revoked(&ca, "0a0b", "cert-1", &revoked)
        .await
        .map_err(|e| format!("mark_revoked: {e}"))?;
    ledger
        .index_certificate(&first)
        .await
        .map_err(|e| format!("index after revocation: {e}"))?;
    let entries = found(ledger.certificates_with_serial(&ca, "0a0b").await)?;
    if entries[0].revoked.as_ref() != Some(&revoked) || entries[1].revoked.is_some() {
        return Err(format!(
            "revocation recorded on cert-1 only, and kept: {entries:?}"
        ));
    }
    match ledger.mark_revoked(&ca, "0a0b", "cert-9", &revoked).await {
        Err(e) if e.kind == RegistryErrorKind::NotFound => Ok(()),
        other => Err(format!(
            "mark_revoked of an unindexed certificate: {other:?}"
        )),
    }
}
