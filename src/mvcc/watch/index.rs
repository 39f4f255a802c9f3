//! Key ranges of watchers, and the index that finds the synced watchers of a key.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The keys one watcher covers, after etcd's normalisation of `(key, range_end)`:
/// an empty key means `"\0"` (the smallest key), an empty `range_end` one key, a
/// `range_end` of `"\0"` every key from `key` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key.
    Key(Vec<u8>),
    /// `[start, end)`, with `start < end`.
    Range { start: Vec<u8>, end: Vec<u8> },
    /// Every key `>= start`.
    FromKey(Vec<u8>),
}

impl KeyRange {
    /// etcd's reading of a create request's `key` and `range_end`; `None` for an empty
    /// range (`key >= range_end`), which etcd refuses with "watcher range is empty".
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Option<KeyRange> {
        let key = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => Some(KeyRange::Key(key)),
            [0] => Some(KeyRange::FromKey(key)),
            end if key.as_slice() >= end => None,
            end => Some(KeyRange::Range {
                start: key,
                end: end.to_vec(),
            }),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Key(key) => k == key.as_slice(),
            KeyRange::Range { start, end } => start.as_slice() <= k && k < end.as_slice(),
            KeyRange::FromKey(start) => start.as_slice() <= k,
        }
    }

    /// `(key, range_end)` in etcd's encoding, as [`super::History::events_since`] takes them.
    pub fn bounds(&self) -> (&[u8], &[u8]) {
        match self {
            KeyRange::Key(key) => (key, &[]),
            KeyRange::Range { start, end } => (start, end),
            KeyRange::FromKey(start) => (start, &[0]),
        }
    }
}

/// Finds the watchers whose range holds a key: a hash map for single-key watchers, and
/// for range watchers an ordered map by start key, scanned up to the key.
///
/// Only synced watchers are indexed; `notify` consults it once per event.
#[derive(Debug, Default)]
pub(super) struct WatcherIndex {
    keys: HashMap<Vec<u8>, BTreeSet<u64>>,
    /// (start, watcher) → end, `None` for from-key.
    ranges: BTreeMap<(Vec<u8>, u64), Option<Vec<u8>>>,
}

impl WatcherIndex {
    pub(super) fn insert(&mut self, watcher: u64, range: &KeyRange) {
        match range {
            KeyRange::Key(key) => {
                self.keys.entry(key.clone()).or_default().insert(watcher);
            }
            KeyRange::Range { start, end } => {
                self.ranges
                    .insert((start.clone(), watcher), Some(end.clone()));
            }
            KeyRange::FromKey(start) => {
                self.ranges.insert((start.clone(), watcher), None);
            }
        }
    }

    pub(super) fn remove(&mut self, watcher: u64, range: &KeyRange) {
        match range {
            KeyRange::Key(key) => {
                if let Some(set) = self.keys.get_mut(key) {
                    set.remove(&watcher);
                    if set.is_empty() {
                        self.keys.remove(key);
                    }
                }
            }
            KeyRange::Range { start, .. } | KeyRange::FromKey(start) => {
                self.ranges.remove(&(start.clone(), watcher));
            }
        }
    }

    /// Appends the watchers whose range holds `key` to `out`.
    pub(super) fn matches(&self, key: &[u8], out: &mut Vec<u64>) {
        if let Some(set) = self.keys.get(key) {
            out.extend(set.iter().copied());
        }
        // Every range starting at or before `key`; (key, u64::MAX) is the largest
        // tuple with that start.
        let upper = (key.to_vec(), u64::MAX);
        for ((_, watcher), end) in self.ranges.range(..=upper) {
            match end {
                Some(end) if key >= end.as_slice() => {}
                _ => out.push(*watcher),
            }
        }
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_etcds_rules() {
        assert_eq!(
            KeyRange::from_request(b"a", b""),
            Some(KeyRange::Key(b"a".to_vec()))
        );
        assert_eq!(
            KeyRange::from_request(b"", b""),
            Some(KeyRange::Key(vec![0]))
        );
        assert_eq!(
            KeyRange::from_request(b"a", b"\0"),
            Some(KeyRange::FromKey(b"a".to_vec()))
        );
        assert_eq!(
            KeyRange::from_request(b"", b"\0"),
            Some(KeyRange::FromKey(vec![0]))
        );
        assert_eq!(KeyRange::from_request(b"b", b"a"), None);
        assert_eq!(KeyRange::from_request(b"a", b"a"), None);
        let prefix = KeyRange::from_request(b"foo/", b"foo0").unwrap();
        assert!(prefix.contains(b"foo/"));
        assert!(prefix.contains(b"foo/bar"));
        assert!(!prefix.contains(b"foo0"));
        assert!(!prefix.contains(b"foo"));
        assert_eq!(prefix.bounds(), (&b"foo/"[..], &b"foo0"[..]));
        assert_eq!(
            KeyRange::FromKey(b"x".to_vec()).bounds(),
            (&b"x"[..], &b"\0"[..])
        );
    }

    #[test]
    fn index_finds_single_range_and_from_key_watchers() {
        let mut index = WatcherIndex::default();
        let single = KeyRange::Key(b"b".to_vec());
        let range = KeyRange::Range {
            start: b"a".to_vec(),
            end: b"c".to_vec(),
        };
        let from = KeyRange::FromKey(b"b".to_vec());
        index.insert(1, &single);
        index.insert(2, &range);
        index.insert(3, &from);
        let found = |k: &[u8]| {
            let mut out = Vec::new();
            index.matches(k, &mut out);
            out.sort_unstable();
            out
        };
        assert_eq!(found(b"a"), vec![2]);
        assert_eq!(found(b"b"), vec![1, 2, 3]);
        assert_eq!(found(b"bz"), vec![2, 3]);
        assert_eq!(found(b"c"), vec![3]);
        assert_eq!(found(b"0"), Vec::<u64>::new());
        index.remove(1, &single);
        index.remove(2, &range);
        index.remove(3, &from);
        assert!(index.is_empty());
    }
}
