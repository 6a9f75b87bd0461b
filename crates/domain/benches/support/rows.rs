//! The rows every `make bench` measurement contributes to the one table: `figure<TAB>target<TAB>
//! measured<TAB>PASS|FAIL` lines (and `# ` notes), appended to `$BENCH_ROWS` when it is set;
//! `scripts/bench_table.py` reads them. Included by path by each benchmark (the jitr-domain
//! benches and jitr-tests' `bench-lambda`), so the format is written down once.

// Each benchmark uses part of it.
#![allow(dead_code)]

use std::fmt::Write as _;

#[derive(Debug, Default)]
pub struct Rows(String);

impl Rows {
    /// A figure against its target; printed, and kept for the table.
    pub fn add(&mut self, figure: &str, target: &str, measured: String, pass: bool) {
        let verdict = if pass { "PASS" } else { "FAIL" };
        println!("  {figure}: {measured} (target {target}) {verdict}");
        let _ = writeln!(self.0, "{figure}\t{target}\t{measured}\t{verdict}");
    }

    /// A line of notes for the report (the critical path's sequence).
    pub fn note(&mut self, line: &str) {
        let _ = writeln!(self.0, "# {line}");
    }

    /// Appends the rows to `$BENCH_ROWS`, when set.
    pub fn save(&self) {
        let Ok(path) = std::env::var("BENCH_ROWS") else {
            return;
        };
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(self.0.as_bytes()))
            .expect("$BENCH_ROWS can be appended to");
    }
}
