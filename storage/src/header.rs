//! Page 0: the file header and the two commit slots (see docs/format.md).
//!
//! ```text
//! offset  size  field
//! 0       8     magic "mnemo-pf"
//! 8       4     format version (1)
//! 12      4     page size
//! 16      4     crc32c of bytes 0..16
//! 256     128   commit slot 0
//! 512     128   commit slot 1
//! ```
//! Each slot lies in its own 512-byte sector and is written alone, so a torn slot write
//! cannot damage the other slot or the header.

use crate::error::{Location, Result, StorageError};
use crate::page::{
    put_u32, put_u64, u32_at, u64_at, ChildRef, PageId, MAX_PAGE_SIZE, MIN_PAGE_SIZE,
};

pub const MAGIC: &[u8; 8] = b"mnemo-pf";
pub const VERSION: u32 = 1;
pub const HEADER_CRC: usize = 16;
pub const SLOT_OFFSETS: [u64; 2] = [256, 512];
pub const SLOT_LEN: usize = 128;
/// Bytes of page 0 that carry meaning; the rest is zero.
pub const HEADER_BYTES: usize = 640;

// Slot fields.
const S_TXN: usize = 0;
const S_CATALOG: usize = 8;
const S_CATALOG_CRC: usize = 16;
const S_FREEDB: usize = 24;
const S_FREEDB_CRC: usize = 32;
const S_PAGE_COUNT: usize = 40;
const S_BASE_TXN: usize = 48;
const S_CRC: usize = 124;

/// The immutable part of page 0.
pub fn encode_header(page_size: usize) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    b[0..8].copy_from_slice(MAGIC);
    put_u32(&mut b, 8, VERSION);
    put_u32(&mut b, 12, page_size as u32);
    let crc = crc32c::crc32c(&b[..HEADER_CRC]);
    put_u32(&mut b, HEADER_CRC, crc);
    b
}

/// Validates the header bytes and returns the page size.
pub fn decode_header(b: &[u8]) -> Result<usize> {
    let bad = |why: String| StorageError::corrupted(Location::Header, why);
    if b.len() < HEADER_BYTES {
        return Err(bad(format!(
            "file is {} bytes, too short for a header",
            b.len()
        )));
    }
    if &b[0..8] != MAGIC {
        return Err(bad("not a mnemo page file (bad magic)".into()));
    }
    let crc = crc32c::crc32c(&b[..HEADER_CRC]);
    if crc != u32_at(b, HEADER_CRC) {
        return Err(bad("header checksum mismatch".into()));
    }
    let version = u32_at(b, 8);
    if version != VERSION {
        return Err(bad(format!("unsupported format version {version}")));
    }
    let ps = u32_at(b, 12) as usize;
    if !ps.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) {
        return Err(bad(format!("invalid page size {ps}")));
    }
    Ok(ps)
}

/// One commit slot: the roots and size of a committed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub txn: u64,
    pub catalog: Option<ChildRef>,
    pub freedb: Option<ChildRef>,
    /// Pages `0..page_count` are in use or free; the file may be longer.
    pub page_count: u64,
    /// The durable commit this one was built on: pages written by later transactions
    /// are verified when this slot is opened after a crash.
    pub base_txn: u64,
}

fn root_to(b: &mut [u8], off: usize, crc_off: usize, r: Option<ChildRef>) {
    let r = r.unwrap_or(ChildRef { page: 0, crc: 0 });
    put_u64(b, off, r.page);
    put_u32(b, crc_off, r.crc);
}

fn root_from(b: &[u8], off: usize, crc_off: usize) -> Option<ChildRef> {
    let page: PageId = u64_at(b, off);
    (page != 0).then(|| ChildRef {
        page,
        crc: u32_at(b, crc_off),
    })
}

impl Slot {
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        put_u64(&mut b, S_TXN, self.txn);
        root_to(&mut b, S_CATALOG, S_CATALOG_CRC, self.catalog);
        root_to(&mut b, S_FREEDB, S_FREEDB_CRC, self.freedb);
        put_u64(&mut b, S_PAGE_COUNT, self.page_count);
        put_u64(&mut b, S_BASE_TXN, self.base_txn);
        let crc = crc32c::crc32c(&b[..S_CRC]);
        put_u32(&mut b, S_CRC, crc);
        b
    }

    /// Decodes a slot, or explains why it is not valid.
    pub fn decode(b: &[u8]) -> std::result::Result<Slot, String> {
        if b.len() < SLOT_LEN {
            return Err("slot is truncated".into());
        }
        if crc32c::crc32c(&b[..S_CRC]) != u32_at(b, S_CRC) {
            return Err("slot checksum mismatch".into());
        }
        let slot = Slot {
            txn: u64_at(b, S_TXN),
            catalog: root_from(b, S_CATALOG, S_CATALOG_CRC),
            freedb: root_from(b, S_FREEDB, S_FREEDB_CRC),
            page_count: u64_at(b, S_PAGE_COUNT),
            base_txn: u64_at(b, S_BASE_TXN),
        };
        if slot.txn == 0 || slot.base_txn >= slot.txn || slot.page_count == 0 {
            return Err("slot fields are inconsistent".into());
        }
        for r in [slot.catalog, slot.freedb].into_iter().flatten() {
            if r.page >= slot.page_count {
                return Err(format!("slot root page {} beyond page count", r.page));
            }
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_slot_round_trip() {
        let h = encode_header(4096);
        assert_eq!(decode_header(&h).unwrap(), 4096);
        let s = Slot {
            txn: 9,
            catalog: Some(ChildRef { page: 3, crc: 77 }),
            freedb: None,
            page_count: 10,
            base_txn: 8,
        };
        assert_eq!(Slot::decode(&s.encode()).unwrap(), s);
        let mut torn = s.encode();
        torn[5] ^= 0xff;
        assert!(Slot::decode(&torn).is_err());
        assert!(
            Slot::decode(&[0u8; SLOT_LEN]).is_err(),
            "an all-zero slot is not valid"
        );
    }

    #[test]
    fn header_rejects_foreign_files() {
        let mut h = encode_header(4096);
        assert!(decode_header(&h[..100]).is_err());
        h[0] = b'x';
        assert!(decode_header(&h)
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
    }
}
