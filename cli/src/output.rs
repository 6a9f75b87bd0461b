//! Printing that stops quietly when the reader goes away (`jitr replay ... | head`).

use std::io::{ErrorKind, Write};

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// stdout was closed by its reader: not an error worth a message.
    BrokenPipe,
    Message(String),
    /// Every event was replayed, and this many of them failed (exit status 2, so scripts can
    /// tell "some events failed" from "could not run").
    EventsFailed {
        failed: usize,
        total: usize,
    },
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Message(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::Message(message.to_owned())
    }
}

/// Writes `text` and a newline to stdout.
pub fn line(text: impl std::fmt::Display) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").map_err(|e| match e.kind() {
        ErrorKind::BrokenPipe => Failure::BrokenPipe,
        _ => Failure::Message(format!("stdout: {e}")),
    })
}
