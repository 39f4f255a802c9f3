//! Whether a set of key permissions covers a requested key or range (etcd's
//! `range_perm_cache.go`).
//!
//! A permission and a request both name `[key, range_end)` the way etcd's KV API does:
//! an empty `range_end` is the single key, `range_end == "\0"` is every key from `key`
//! on. The permissions of one kind a user holds (through all its roles) are merged into
//! disjoint intervals; a request is allowed when one merged interval contains it.
//!
//! Example: READ on `[a, c)` and on `[c, e)` merge into `[a, e)`, so a range over
//! `[b, d)` is allowed although neither permission alone covers it; a range over
//! `[b, f)` is not.

use mnemo_proto::authpb::{permission::Type as PermType, Permission};

/// The end of an interval: a key (exclusive) or past every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinity,
}

/// `[key, range_end)` in etcd's encoding, as an interval.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            End::Key(next)
        }
        [0] => End::Infinity,
        end => End::Key(end.to_vec()),
    };
    (key.to_vec(), end)
}

/// Whether a permission of type `have` grants `want` (READWRITE grants both).
fn grants(have: i32, want: PermType) -> bool {
    have == PermType::Readwrite as i32 || have == want as i32
}

/// Whether `perms` grant `want` on every key of `[key, range_end)`.
pub fn covers<'a>(
    perms: impl IntoIterator<Item = &'a Permission>,
    want: PermType,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let mut intervals: Vec<(Vec<u8>, End)> = perms
        .into_iter()
        .filter(|p| grants(p.perm_type, want))
        .map(|p| interval(&p.key, &p.range_end))
        .filter(|(start, end)| match end {
            End::Key(e) => start < e,
            End::Infinity => true,
        })
        .collect();
    intervals.sort();
    let (start, end) = interval(key, range_end);
    if let End::Key(e) = &end {
        if &start >= e {
            // An empty (or reversed) range reads nothing; etcd still asks for the key.
            return covers_point(&intervals, &start);
        }
    }
    let mut merged: Vec<(Vec<u8>, End)> = Vec::new();
    for (s, e) in intervals {
        if let Some((_, last)) = merged.last_mut() {
            let touches = match last {
                End::Key(l) => &s <= l,
                End::Infinity => true,
            };
            if touches {
                if e > *last {
                    *last = e;
                }
                continue;
            }
        }
        merged.push((s, e));
    }
    merged.iter().any(|(s, e)| *s <= start && *e >= end)
}

fn covers_point(intervals: &[(Vec<u8>, End)], key: &[u8]) -> bool {
    intervals.iter().any(|(s, e)| {
        s.as_slice() <= key
            && match e {
                End::Key(e) => key < e.as_slice(),
                End::Infinity => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn single_keys_prefixes_and_from_key() {
        let perms = [
            perm(PermType::Read, "k1", b""),
            perm(PermType::Readwrite, "p/", b"p0"),
            perm(PermType::Write, "z", b"\0"),
        ];
        assert!(covers(&perms, PermType::Read, b"k1", b""));
        assert!(!covers(&perms, PermType::Write, b"k1", b""));
        assert!(!covers(&perms, PermType::Read, b"k10", b""));
        assert!(!covers(&perms, PermType::Read, b"k1", b"k2"));
        assert!(covers(&perms, PermType::Read, b"p/a", b""));
        assert!(covers(&perms, PermType::Write, b"p/", b"p0"));
        assert!(covers(&perms, PermType::Read, b"p/a", b"p/b"));
        assert!(!covers(&perms, PermType::Read, b"p/", b"\0"));
        assert!(covers(&perms, PermType::Write, b"zz", b"\0"));
        assert!(covers(&perms, PermType::Write, b"zz", b""));
        assert!(!covers(&perms, PermType::Read, b"zz", b""));
        assert!(!covers(&perms, PermType::Write, b"y", b"\0"));
        assert!(!covers(&[], PermType::Read, b"a", b""));
    }

    #[test]
    fn adjacent_permissions_merge() {
        let perms = [
            perm(PermType::Read, "c", b"e"),
            perm(PermType::Read, "a", b"c"),
        ];
        assert!(covers(&perms, PermType::Read, b"b", b"d"));
        assert!(covers(&perms, PermType::Read, b"a", b"e"));
        assert!(!covers(&perms, PermType::Read, b"b", b"f"));
        let gap = [
            perm(PermType::Read, "a", b"b"),
            perm(PermType::Read, "c", b"e"),
        ];
        assert!(!covers(&gap, PermType::Read, b"a", b"d"));
        assert!(covers(&gap, PermType::Read, b"c", b"d"));
    }
}
