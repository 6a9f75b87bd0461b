//! The revoked serials of one list, stored compactly: a million 20-byte serials take 20 MB,
//! where a hash set of boxed slices took several times that (a pointer, a length and an
//! allocation per serial, plus the table).
//!
//! Serials are grouped by their normalized length; each group is one sorted byte array of
//! fixed-width entries, searched by bisection (about 20 comparisons for a million entries).

use std::cmp::Ordering;

use crate::certificate::normalized_serial;

/// Collects serials in any order; [`SerialSetBuilder::build`] sorts them.
#[derive(Debug, Default)]
pub struct SerialSetBuilder {
    /// `groups[n]` holds the serials of normalized length `n`, concatenated.
    groups: Vec<Vec<u8>>,
    /// The serial zero, which normalizes to no bytes at all.
    zero: bool,
}

impl SerialSetBuilder {
    /// Adds a serial (raw: leading zero bytes do not matter).
    pub fn push(&mut self, serial: &[u8]) {
        let serial = normalized_serial(serial);
        if serial.is_empty() {
            self.zero = true;
            return;
        }
        if self.groups.len() <= serial.len() {
            self.groups.resize_with(serial.len() + 1, Vec::new);
        }
        self.groups[serial.len()].extend_from_slice(serial);
    }

    /// Sorts every group in place and drops repeated serials.
    pub fn build(mut self) -> SerialSet {
        for (width, group) in self.groups.iter_mut().enumerate().skip(1) {
            sort_and_dedup(group, width);
            group.shrink_to_fit();
        }
        SerialSet {
            groups: self.groups,
            zero: self.zero,
        }
    }
}

/// A set of normalized serials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerialSet {
    groups: Vec<Vec<u8>>,
    zero: bool,
}

impl SerialSet {
    /// True when `serial` (raw or normalized) is in the set.
    pub fn contains(&self, serial: &[u8]) -> bool {
        let serial = normalized_serial(serial);
        if serial.is_empty() {
            return self.zero;
        }
        let Some(group) = self.groups.get(serial.len()) else {
            return false;
        };
        let width = serial.len();
        let (mut low, mut high) = (0, group.len() / width);
        while low < high {
            let middle = low + (high - low) / 2;
            match group[middle * width..(middle + 1) * width].cmp(serial) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return true,
            }
        }
        false
    }

    /// Every serial, shortest first, in order within a length.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let zero: &[u8] = &[];
        let zero = self.zero.then_some(zero);
        let rest = (self.groups.iter().enumerate().skip(1))
            .flat_map(|(width, group)| group.chunks_exact(width));
        zero.into_iter().chain(rest)
    }

    /// How many serials.
    pub fn len(&self) -> usize {
        let sized = (self.groups.iter().enumerate().skip(1)).map(|(width, g)| g.len() / width);
        usize::from(self.zero) + sized.sum::<usize>()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        !self.zero && self.groups.iter().all(Vec::is_empty)
    }

    /// Heap bytes held, for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.groups.iter().map(Vec::capacity).sum::<usize>()
            + self.groups.capacity() * size_of::<Vec<u8>>()
    }
}

impl FromIterator<Vec<u8>> for SerialSet {
    fn from_iter<I: IntoIterator<Item = Vec<u8>>>(serials: I) -> Self {
        let mut builder = SerialSetBuilder::default();
        for serial in serials {
            builder.push(&serial);
        }
        builder.build()
    }
}

/// Sorts the `width`-byte entries of `group` in place and removes repeats. Serials up to 32
/// bytes (RFC 5280 allows 20) sort as fixed-size arrays; longer ones through an index.
fn sort_and_dedup(group: &mut Vec<u8>, width: usize) {
    macro_rules! fixed {
        ($($w:literal)*) => {
            match width {
                $($w => return sort_and_dedup_fixed::<$w>(group),)*
                _ => {}
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
    let mut order: Vec<usize> = (0..group.len() / width).collect();
    let entry = |i: usize| &group[i * width..(i + 1) * width];
    order.sort_unstable_by(|&a, &b| entry(a).cmp(entry(b)));
    order.dedup_by(|a, b| entry(*a) == entry(*b));
    let sorted: Vec<u8> = order
        .iter()
        .flat_map(|&i| entry(i).iter().copied())
        .collect();
    *group = sorted;
}

/// `sort_and_dedup` for entries of `W` bytes, sorted as arrays in place.
fn sort_and_dedup_fixed<const W: usize>(group: &mut Vec<u8>) {
    let (entries, _) = group.as_chunks_mut::<W>();
    entries.sort_unstable();
    let mut kept = 0;
    for i in 0..entries.len() {
        if kept == 0 || entries[i] != entries[kept - 1] {
            entries[kept] = entries[i];
            kept += 1;
        }
    }
    group.truncate(kept * W);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(serials: &[&[u8]]) -> SerialSet {
        serials.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn finds_exactly_the_serials_added_whatever_their_leading_zeros() {
        let long = [0xab; 40];
        let s = set(&[&[1, 2], &[0, 3, 4], &[0x7f; 20], &long, &[9], &[1, 2]]);
        assert_eq!(s.len(), 5, "the repeated serial counts once");
        for present in [&[1u8, 2][..], &[0, 1, 2], &[3, 4], &[0x7f; 20], &long, &[9]] {
            assert!(s.contains(present), "{present:?}");
        }
        for absent in [&[1u8, 3][..], &[2], &[0x7f; 19], &[0xab; 39], &[], &[0, 0]] {
            assert!(!s.contains(absent), "{absent:?}");
        }
    }

    #[test]
    fn the_zero_serial_is_one_entry() {
        let s = set(&[&[0], &[0, 0], &[5]]);
        assert_eq!(s.len(), 2);
        assert!(s.contains(&[0]) && s.contains(&[]));
        assert_eq!(s.iter().collect::<Vec<_>>(), [&[][..], &[5]]);
        assert!(!set(&[&[5]]).contains(&[0]));
        // The zero serial alone is not nothing.
        assert!(!set(&[&[0]]).is_empty());
        assert!(!set(&[&[5]]).is_empty());
        assert!(set(&[]).is_empty());
    }

    #[test]
    fn agrees_with_a_hash_set_on_many_serials() {
        use std::collections::HashSet;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let serials: Vec<Vec<u8>> = (0..5_000)
            .map(|_| {
                let len = (next() % 22) as usize;
                (0..len).map(|_| (next() % 4) as u8).collect()
            })
            .collect();
        let (kept, probes) = serials.split_at(2_500);
        let s: SerialSet = kept.iter().cloned().collect();
        let reference: HashSet<&[u8]> = kept.iter().map(|v| normalized_serial(v)).collect();
        assert_eq!(s.len(), reference.len());
        let mut listed: Vec<&[u8]> = s.iter().collect();
        listed.sort();
        let mut expected: Vec<&[u8]> = reference.iter().copied().collect();
        expected.sort();
        assert_eq!(listed, expected);
        for probe in probes.iter().chain(kept) {
            assert_eq!(
                s.contains(probe),
                reference.contains(normalized_serial(probe)),
                "{probe:?}"
            );
        }
    }

    #[test]
    fn long_serials_sort_and_dedup_through_the_index() {
        let (a, b, c) = ([0x0a; 40], [0x0b; 40], [0x0c; 41]);
        let mut b_low = b;
        b_low[39] = 0x01;
        let s = set(&[&c, &b, &a, &b_low, &b, &a]);
        assert_eq!(s.len(), 4, "repeats count once");
        for present in [&a[..], &b, &b_low, &c] {
            assert!(s.contains(present));
        }
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [&a[..], &b_low, &b, &c],
            "shortest first, in order within a length"
        );
    }

    #[test]
    fn heap_bytes_count_the_serials_and_their_groups() {
        let serials: Vec<Vec<u8>> = (1..=1000u64)
            .map(|n| (n | 0x4000_0000_0000_0000).to_be_bytes().to_vec())
            .collect();
        let s: SerialSet = serials.into_iter().collect();
        let payload = 1000 * 8;
        let headers = s.groups.len() * size_of::<Vec<u8>>();
        let held = s.heap_bytes();
        assert!(held >= payload + headers, "{held} < {payload} + {headers}");
        assert!(held <= 2 * payload + 2 * headers + 64, "{held}");
    }
}
