//! The IoT quota table (docs/operations.md), the fault model's quotas and the revocation sync's default pace
//! agree (issue 19, item 9): one table an operator reads, and the model the tests run under.

#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use jitr_domain::config::DEFAULT_REVOCATION_SYNC_RATE;
use jitr_testkit::fault_model::DEFAULT_IOT_QUOTAS;

const OPERATIONS: &str = include_str!("../../docs/operations.md");
const TEMPLATE: &str = include_str!("../../template.yaml");

/// API → default rate, from the rows between the quota-table markers.
fn documented_quotas() -> BTreeMap<String, f64> {
    let start = OPERATIONS
        .find("<!-- quota-table -->")
        .expect("docs/operations.md has the quota table");
    let end = OPERATIONS
        .find("<!-- /quota-table -->")
        .expect("the table ends");
    OPERATIONS[start..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| IoT API"))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let rate = cells[cells.len() - 1].trim_end_matches('†').trim();
            (
                cells[0].to_owned(),
                rate.parse::<f64>()
                    .unwrap_or_else(|_| panic!("rate of {row}")),
            )
        })
        .collect()
}

#[test]
fn the_documented_table_and_the_fault_model_name_the_same_quotas() {
    let model: BTreeMap<String, f64> = DEFAULT_IOT_QUOTAS
        .iter()
        .map(|(api, rate)| ((*api).to_owned(), *rate))
        .collect();
    assert_eq!(documented_quotas(), model);
}

#[test]
fn the_revocation_sync_leaves_registration_most_of_update_certificate() {
    let quota = documented_quotas()["UpdateCertificate"];
    assert!(
        f64::from(DEFAULT_REVOCATION_SYNC_RATE) <= quota / 5.0,
        "the sync's default {DEFAULT_REVOCATION_SYNC_RATE}/s takes more than a fifth of {quota}/s"
    );
    let parameter = TEMPLATE
        .split("  RevocationSyncRate:\n")
        .nth(1)
        .and_then(|rest| {
            rest.lines()
                .find_map(|l| l.trim().strip_prefix("Default: "))
        })
        .expect("template.yaml has RevocationSyncRate's default");
    assert_eq!(parameter, DEFAULT_REVOCATION_SYNC_RATE.to_string());
}
