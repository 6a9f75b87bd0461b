//! How new a revocation list is and how far the sync got with it: what the ledger keeps per
//! (source, CA). A leaf, so the ledger can keep them without depending on the rest of
//! revocation.

/// How new a list is: its cRLNumber (big-endian, no leading zeros) and thisUpdate. The ledger
/// keeps the highest accepted per (source, CA), so no eviction, cold start or other container
/// can make an older list acceptable again (invariant 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMark {
    pub crl_number: Option<Vec<u8>>,
    pub this_update: i64,
}

/// How far the revocation sync got with one (source, CA), kept in the ledger so any container's
/// next run goes on from there: the list it is applying, where the next run starts (a position
/// in the list's serials, or, walking the CA's index, the index cursor), and whether the list was
/// applied to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncProgress {
    pub mark: ListMark,
    pub next: u64,
    /// Walking the CA's serial index: the cursor after the last entry done.
    pub walk_after: Option<String>,
    pub complete: bool,
}

impl ListMark {
    /// Older by cRLNumber, an equal number by thisUpdate (a re-signed list of the same number
    /// issued earlier is older), or by thisUpdate alone when either list has no number.
    pub fn is_older_than(&self, other: &Self) -> bool {
        match (&self.crl_number, &other.crl_number) {
            (Some(a), Some(b)) => (a.len(), a, self.this_update) < (b.len(), b, other.this_update),
            _ => self.this_update < other.this_update,
        }
    }

    /// The cRLNumber as a string whose byte order is the numbers' order (length first).
    pub fn number_key(&self) -> Option<String> {
        self.crl_number
            .as_ref()
            .map(|n| format!("{:08x}{}", n.len(), hex::encode(n)))
    }

    /// The inverse of [`ListMark::number_key`].
    pub fn from_number_key(key: Option<&str>, this_update: i64) -> Option<Self> {
        let crl_number = match key {
            Some(key) => Some(hex::decode(key.get(8..)?).ok()?),
            None => None,
        };
        Some(Self {
            crl_number,
            this_update,
        })
    }
}
