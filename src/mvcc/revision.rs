//! Revisions: the position of one change in the store's history.
//!
//! Every write command that changes something gets the next *main* revision; the changes
//! inside it (each put, each deleted key) get *sub* revisions 0, 1, 2, ... in order. The
//! pair is the key of the history table, encoded big-endian so that byte order is
//! revision order.

use std::fmt;

/// Bytes of an encoded [`Revision`].
pub const REVISION_LEN: usize = 16;

/// `(main, sub)`: main is the store revision of the command, sub the change's position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    // Format: { main u64 BE | sub u64 BE }; revisions are never negative, so the unsigned
    // big-endian bytes sort like the numbers.
    pub fn encode(&self) -> [u8; REVISION_LEN] {
        let mut b = [0u8; REVISION_LEN];
        b[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        b
    }

    /// Decodes a history-table key; `None` if it is not 16 bytes or out of range.
    pub fn decode(b: &[u8]) -> Option<Revision> {
        if b.len() != REVISION_LEN {
            return None;
        }
        let main = u64::from_be_bytes(b[..8].try_into().ok()?);
        let sub = u64::from_be_bytes(b[8..].try_into().ok()?);
        Some(Revision {
            main: i64::try_from(main).ok()?,
            sub: i64::try_from(sub).ok()?,
        })
    }

    /// The first revision of main revision `main` (for range scans by main revision).
    pub const fn first_of(main: i64) -> Revision {
        Revision { main, sub: 0 }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_orders_like_revisions() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(255, 3),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for w in revs.windows(2) {
            assert!(w[0].encode() < w[1].encode(), "{} vs {}", w[0], w[1]);
        }
        for r in revs {
            assert_eq!(Revision::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn decode_rejects_bad_keys() {
        assert_eq!(Revision::decode(&[0u8; 15]), None);
        assert_eq!(Revision::decode(&[0xff; 16]), None);
    }
}
