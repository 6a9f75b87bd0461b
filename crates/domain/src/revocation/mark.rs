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

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(number: Option<&[u8]>, this_update: i64) -> ListMark {
        ListMark {
            crl_number: number.map(<[u8]>::to_vec),
            this_update,
        }
    }

    #[test]
    fn older_by_number_then_by_this_update() {
        let cases = [
            // (self, other, older)
            (mark(Some(&[1]), 200), mark(Some(&[2]), 100), true),
            (mark(Some(&[2]), 100), mark(Some(&[1]), 200), false),
            (mark(Some(&[0xff]), 100), mark(Some(&[1, 0]), 100), true),
            (mark(Some(&[5]), 100), mark(Some(&[5]), 200), true),
            (mark(Some(&[5]), 200), mark(Some(&[5]), 200), false),
            (mark(None, 100), mark(Some(&[9]), 200), true),
            (mark(Some(&[9]), 200), mark(None, 100), false),
            (mark(None, 100), mark(None, 100), false),
            (mark(None, 300), mark(None, 100), false),
        ];
        for (this, other, older) in cases {
            assert_eq!(this.is_older_than(&other), older, "{this:?} vs {other:?}");
        }
    }

    #[test]
    fn the_number_key_sorts_as_the_numbers_and_reads_back() {
        let small = mark(Some(&[0xff]), 1);
        let large = mark(Some(&[0x01, 0x2c]), 1);
        assert_eq!(small.number_key().as_deref(), Some("00000001ff"));
        assert_eq!(large.number_key().as_deref(), Some("00000002012c"));
        assert!(small.number_key() < large.number_key());
        assert_eq!(mark(None, 1).number_key(), None);
        for m in [small, large, mark(None, 7)] {
            assert_eq!(
                ListMark::from_number_key(m.number_key().as_deref(), m.this_update),
                Some(m.clone())
            );
        }
        assert_eq!(ListMark::from_number_key(Some("00000001zz"), 1), None);
    }
}
