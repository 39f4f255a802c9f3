//! Page layouts: typed views over `&[u8]` and builders for each page kind.
//!
//! Every page starts with the same 24-byte header (see docs/format.md):
//!
//! ```text
//! 0      1      2        4        8            16           24
//! | kind | 0    | count  | crc32c | txn_id     | page_id    | body ...
//! ```
//!
//! `crc32c` covers the whole page except its own four bytes. `txn_id` is the write
//! transaction that wrote the page and `page_id` its own number, so a write that landed at
//! the wrong place, or never landed, is caught when the page is read back.
//!
//! Integers are little-endian. Views are only built over pages that passed
//! [`validate`], so their accessors index without further checks.

use crate::error::{Result, StorageError};

pub type PageId = u64;

pub const HEADER_LEN: usize = 24;
const KIND: usize = 0;
const COUNT: usize = 2;
const CRC: usize = 4;
const TXN: usize = 8;
const ID: usize = 16;

/// Bit set in a leaf entry's `value_end` when the value lives in overflow pages.
const OVERFLOW_FLAG: u32 = 1 << 31;
/// Size of the in-leaf descriptor of an overflow value: first page, length, crc32c.
pub const OVERFLOW_DESC_LEN: usize = 20;
/// Overflow page: `next` page id and the number of data bytes in this page.
const OVF_NEXT: usize = HEADER_LEN;
const OVF_USED: usize = HEADER_LEN + 8;
pub const OVF_DATA: usize = HEADER_LEN + 12;

/// Size of a branch child reference: page id (u64) and the child's crc32c (u32).
const CHILD_LEN: usize = 12;
/// Size of a leaf entry-table slot: key end (u32) and value end (u32).
const LEAF_SLOT_LEN: usize = 8;

pub const MIN_PAGE_SIZE: usize = 1024;
pub const MAX_PAGE_SIZE: usize = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Leaf = 1,
    Branch = 2,
    Overflow = 3,
}

impl PageKind {
    pub fn from_byte(b: u8) -> Option<PageKind> {
        match b {
            1 => Some(PageKind::Leaf),
            2 => Some(PageKind::Branch),
            3 => Some(PageKind::Overflow),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PageKind::Leaf => "leaf",
            PageKind::Branch => "branch",
            PageKind::Overflow => "overflow",
        }
    }
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// The checksum of a page: crc32c over everything but the checksum field.
pub fn checksum(page: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&page[..CRC]), &page[CRC + 4..])
}

pub fn kind_byte(page: &[u8]) -> u8 {
    page[KIND]
}

pub fn count(page: &[u8]) -> usize {
    u16_at(page, COUNT) as usize
}

pub fn stored_crc(page: &[u8]) -> u32 {
    u32_at(page, CRC)
}

pub fn txn_id(page: &[u8]) -> u64 {
    u64_at(page, TXN)
}

pub fn page_id(page: &[u8]) -> u64 {
    u64_at(page, ID)
}

/// Stamps the writing transaction and the page's own id, then the checksum; returns it.
pub fn seal(page: &mut [u8], txn: u64, id: PageId) -> u32 {
    put_u64(page, TXN, txn);
    put_u64(page, ID, id);
    let crc = checksum(page);
    put_u32(page, CRC, crc);
    crc
}

fn new_page(page_size: usize, kind: PageKind, count: usize) -> Vec<u8> {
    let mut p = vec![0u8; page_size];
    p[KIND] = kind as u8;
    debug_assert!(count <= u16::MAX as usize);
    p[COUNT..COUNT + 2].copy_from_slice(&(count as u16).to_le_bytes());
    p
}

/// Checks a page read from disk: checksum, self id, kind, and that every offset in it is
/// in bounds and keys are strictly ordered, so views over it cannot index out of range.
pub fn validate(page: &[u8], id: PageId) -> Result<PageKind> {
    let bad = |why: String| StorageError::page(id, why);
    if page.len() < MIN_PAGE_SIZE {
        return Err(bad(format!(
            "page is {} bytes, shorter than any page size",
            page.len()
        )));
    }
    let crc = checksum(page);
    if crc != stored_crc(page) {
        return Err(bad(format!(
            "checksum mismatch: stored {:#010x}, computed {crc:#010x}",
            stored_crc(page)
        )));
    }
    if page_id(page) != id {
        return Err(bad(format!("page claims to be page {}", page_id(page))));
    }
    let kind = PageKind::from_byte(page[KIND])
        .ok_or_else(|| bad(format!("unknown page kind {}", page[KIND])))?;
    match kind {
        PageKind::Leaf => LeafPage::check_layout(page).map_err(bad)?,
        PageKind::Branch => BranchPage::check_layout(page).map_err(bad)?,
        PageKind::Overflow => {
            let used = u32_at(page, OVF_USED) as usize;
            if OVF_DATA + used > page.len() {
                return Err(bad(format!("overflow page claims {used} data bytes")));
            }
        }
    }
    Ok(kind)
}

/// How a leaf stores a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafValue<'a> {
    Inline(&'a [u8]),
    Overflow(OverflowRef),
}

/// Where an overflow value lives: the first page of its chain, its length and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowRef {
    pub first: PageId,
    pub len: u64,
    pub crc: u32,
}

impl OverflowRef {
    pub fn encode(&self) -> [u8; OVERFLOW_DESC_LEN] {
        let mut b = [0u8; OVERFLOW_DESC_LEN];
        b[0..8].copy_from_slice(&self.first.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..20].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> OverflowRef {
        OverflowRef {
            first: u64_at(b, 0),
            len: u64_at(b, 8),
            crc: u32_at(b, 16),
        }
    }
}

/// A leaf page: sorted key/value entries.
///
/// ```text
/// | header | n × (key_end u32, value_end u32) | key0 value0 key1 value1 ... | free |
/// ```
/// Ends are offsets from the page start; key i starts where value i-1 ends (the first at
/// the end of the slot table). `value_end`'s top bit marks a 20-byte overflow descriptor.
#[derive(Debug, Clone, Copy)]
pub struct LeafPage<'a> {
    data: &'a [u8],
    n: usize,
}

impl<'a> LeafPage<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        debug_assert_eq!(data[KIND], PageKind::Leaf as u8);
        LeafPage {
            data,
            n: count(data),
        }
    }

    fn check_layout(page: &[u8]) -> std::result::Result<(), String> {
        let n = count(page);
        let table_end = HEADER_LEN + n * LEAF_SLOT_LEN;
        if table_end > page.len() {
            return Err(format!("leaf claims {n} entries, more than fit"));
        }
        let mut start = table_end;
        let mut prev_key: Option<&[u8]> = None;
        for i in 0..n {
            let k_end = u32_at(page, HEADER_LEN + i * LEAF_SLOT_LEN) as usize;
            let raw = u32_at(page, HEADER_LEN + i * LEAF_SLOT_LEN + 4);
            let v_end = (raw & !OVERFLOW_FLAG) as usize;
            if !(start <= k_end && k_end <= v_end && v_end <= page.len()) {
                return Err(format!("leaf entry {i} has offsets out of order or bounds"));
            }
            if raw & OVERFLOW_FLAG != 0 && v_end - k_end != OVERFLOW_DESC_LEN {
                return Err(format!(
                    "leaf entry {i} has a malformed overflow descriptor"
                ));
            }
            let key = &page[start..k_end];
            if let Some(p) = prev_key {
                if p >= key {
                    return Err(format!("leaf keys out of order at entry {i}"));
                }
            }
            prev_key = Some(key);
            start = v_end;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn key_start(&self, i: usize) -> usize {
        if i == 0 {
            HEADER_LEN + self.n * LEAF_SLOT_LEN
        } else {
            (u32_at(self.data, HEADER_LEN + (i - 1) * LEAF_SLOT_LEN + 4) & !OVERFLOW_FLAG) as usize
        }
    }

    fn key_end(&self, i: usize) -> usize {
        u32_at(self.data, HEADER_LEN + i * LEAF_SLOT_LEN) as usize
    }

    fn raw_value_end(&self, i: usize) -> u32 {
        u32_at(self.data, HEADER_LEN + i * LEAF_SLOT_LEN + 4)
    }

    pub fn key(&self, i: usize) -> &'a [u8] {
        &self.data[self.key_start(i)..self.key_end(i)]
    }

    /// Byte range of value `i` inside the page (the descriptor, for overflow values).
    pub fn value_range(&self, i: usize) -> std::ops::Range<usize> {
        self.key_end(i)..(self.raw_value_end(i) & !OVERFLOW_FLAG) as usize
    }

    pub fn is_overflow(&self, i: usize) -> bool {
        self.raw_value_end(i) & OVERFLOW_FLAG != 0
    }

    pub fn value(&self, i: usize) -> LeafValue<'a> {
        let bytes = &self.data[self.value_range(i)];
        if self.is_overflow(i) {
            LeafValue::Overflow(OverflowRef::decode(bytes))
        } else {
            LeafValue::Inline(bytes)
        }
    }

    /// Stored bytes of entry `i`'s value, and whether they are an overflow descriptor.
    pub fn stored_value(&self, i: usize) -> (&'a [u8], bool) {
        (&self.data[self.value_range(i)], self.is_overflow(i))
    }

    /// `Ok(i)` if key `i` equals `key`, else `Err(i)` where it would be inserted.
    pub fn find(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Bytes used by the page (header, slots, keys and values).
    pub fn used_bytes(&self) -> usize {
        if self.n == 0 {
            HEADER_LEN
        } else {
            (self.raw_value_end(self.n - 1) & !OVERFLOW_FLAG) as usize
        }
    }

    /// Entry `i` as a builder input.
    pub fn entry(&self, i: usize) -> LeafEntry<'a> {
        let (value, overflow) = self.stored_value(i);
        LeafEntry {
            key: self.key(i),
            value,
            overflow,
        }
    }
}

/// One leaf entry as stored: the key, the inline value or overflow descriptor.
#[derive(Debug, Clone, Copy)]
pub struct LeafEntry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub overflow: bool,
}

impl LeafEntry<'_> {
    pub fn size(&self) -> usize {
        LEAF_SLOT_LEN + self.key.len() + self.value.len()
    }
}

pub fn leaf_size<'e>(entries: impl IntoIterator<Item = &'e LeafEntry<'e>>) -> usize {
    HEADER_LEN + entries.into_iter().map(|e| e.size()).sum::<usize>()
}

/// Builds a leaf page from sorted entries that fit.
pub fn build_leaf(page_size: usize, entries: &[LeafEntry<'_>]) -> Vec<u8> {
    let mut p = new_page(page_size, PageKind::Leaf, entries.len());
    let mut pos = HEADER_LEN + entries.len() * LEAF_SLOT_LEN;
    for (i, e) in entries.iter().enumerate() {
        p[pos..pos + e.key.len()].copy_from_slice(e.key);
        pos += e.key.len();
        put_u32(&mut p, HEADER_LEN + i * LEAF_SLOT_LEN, pos as u32);
        p[pos..pos + e.value.len()].copy_from_slice(e.value);
        pos += e.value.len();
        let flag = if e.overflow { OVERFLOW_FLAG } else { 0 };
        put_u32(
            &mut p,
            HEADER_LEN + i * LEAF_SLOT_LEN + 4,
            pos as u32 | flag,
        );
    }
    debug_assert!(pos <= page_size);
    p
}

/// A branch page: `n` children separated by `n - 1` keys. Child `i` holds keys `k` with
/// `key[i-1] <= k < key[i]`.
///
/// ```text
/// | header | n × (child page u64, child crc32c u32) | (n-1) × key_end u32 | keys | free |
/// ```
/// Child checksums make the tree self-verifying from its root: a lost or misplaced write
/// of any page is caught by its parent.
#[derive(Debug, Clone, Copy)]
pub struct BranchPage<'a> {
    data: &'a [u8],
    n: usize,
}

/// A reference from a branch to a child page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildRef {
    pub page: PageId,
    pub crc: u32,
}

impl<'a> BranchPage<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        debug_assert_eq!(data[KIND], PageKind::Branch as u8);
        BranchPage {
            data,
            n: count(data),
        }
    }

    fn check_layout(page: &[u8]) -> std::result::Result<(), String> {
        let n = count(page);
        if n < 2 {
            return Err(format!("branch has {n} children, fewer than two"));
        }
        let keys_start = HEADER_LEN + n * CHILD_LEN + (n - 1) * 4;
        if keys_start > page.len() {
            return Err(format!("branch claims {n} children, more than fit"));
        }
        let b = BranchPage { data: page, n };
        let mut start = keys_start;
        for i in 0..n - 1 {
            let end = b.key_end(i);
            if end < start || end > page.len() {
                return Err(format!("branch key {i} has offsets out of order or bounds"));
            }
            if i > 0 && page[b.key_start(i - 1)..start] >= page[start..end] {
                return Err(format!("branch keys out of order at key {i}"));
            }
            start = end;
        }
        Ok(())
    }

    pub fn children(&self) -> usize {
        self.n
    }

    pub fn child(&self, i: usize) -> ChildRef {
        let off = HEADER_LEN + i * CHILD_LEN;
        ChildRef {
            page: u64_at(self.data, off),
            crc: u32_at(self.data, off + 8),
        }
    }

    fn keys_start(&self) -> usize {
        HEADER_LEN + self.n * CHILD_LEN + (self.n - 1) * 4
    }

    fn key_end(&self, i: usize) -> usize {
        u32_at(self.data, HEADER_LEN + self.n * CHILD_LEN + i * 4) as usize
    }

    fn key_start(&self, i: usize) -> usize {
        if i == 0 {
            self.keys_start()
        } else {
            self.key_end(i - 1)
        }
    }

    /// Separator key `i` (`0 <= i < children() - 1`).
    pub fn key(&self, i: usize) -> &'a [u8] {
        &self.data[self.key_start(i)..self.key_end(i)]
    }

    /// Index of the child whose range holds `key`.
    pub fn find_child(&self, key: &[u8]) -> usize {
        // First separator greater than `key`.
        let (mut lo, mut hi) = (0, self.n - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub fn used_bytes(&self) -> usize {
        if self.n < 2 {
            self.keys_start()
        } else {
            self.key_end(self.n - 2)
        }
    }
}

/// Size of a branch page with these separator keys (one more child than keys).
pub fn branch_size<'k>(keys: impl IntoIterator<Item = &'k [u8]>) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for k in keys {
        n += 1;
        bytes += k.len();
    }
    HEADER_LEN + (n + 1) * CHILD_LEN + n * 4 + bytes
}

/// Builds a branch page; `keys.len() + 1 == children.len()`.
pub fn build_branch(page_size: usize, children: &[ChildRef], keys: &[&[u8]]) -> Vec<u8> {
    debug_assert_eq!(keys.len() + 1, children.len());
    let n = children.len();
    let mut p = new_page(page_size, PageKind::Branch, n);
    for (i, c) in children.iter().enumerate() {
        put_u64(&mut p, HEADER_LEN + i * CHILD_LEN, c.page);
        put_u32(&mut p, HEADER_LEN + i * CHILD_LEN + 8, c.crc);
    }
    let mut pos = HEADER_LEN + n * CHILD_LEN + (n - 1) * 4;
    for (i, k) in keys.iter().enumerate() {
        p[pos..pos + k.len()].copy_from_slice(k);
        pos += k.len();
        put_u32(&mut p, HEADER_LEN + n * CHILD_LEN + i * 4, pos as u32);
    }
    debug_assert!(pos <= page_size);
    p
}

/// Points child `i` of a branch page at `child`.
pub fn set_child(branch: &mut [u8], i: usize, child: ChildRef) {
    put_u64(branch, HEADER_LEN + i * CHILD_LEN, child.page);
    put_u32(branch, HEADER_LEN + i * CHILD_LEN + 8, child.crc);
}

/// Overwrites the checksum recorded for child `i` of a branch page (used at commit, once
/// the child's final bytes are known).
pub fn set_child_crc(branch: &mut [u8], i: usize, crc: u32) {
    put_u32(branch, HEADER_LEN + i * CHILD_LEN + 8, crc);
}

/// Builds one overflow page holding `data` and pointing at `next` (0: end of chain).
pub fn build_overflow(page_size: usize, data: &[u8], next: PageId) -> Vec<u8> {
    let mut p = new_page(page_size, PageKind::Overflow, 0);
    put_u64(&mut p, OVF_NEXT, next);
    put_u32(&mut p, OVF_USED, data.len() as u32);
    p[OVF_DATA..OVF_DATA + data.len()].copy_from_slice(data);
    p
}

/// The `next` link and data of a validated overflow page.
pub fn overflow_parts(page: &[u8]) -> (PageId, &[u8]) {
    let used = u32_at(page, OVF_USED) as usize;
    (u64_at(page, OVF_NEXT), &page[OVF_DATA..OVF_DATA + used])
}

/// Data bytes one overflow page holds.
pub fn overflow_capacity(page_size: usize) -> usize {
    page_size - OVF_DATA
}

/// The largest leaf entry (slot + key + inline value) stored inline; larger values go to
/// overflow pages. Chosen so that any two entries fit in one leaf, which makes every
/// split possible.
pub fn max_inline_entry(page_size: usize) -> usize {
    (page_size - HEADER_LEN) / 2
}

/// The largest key accepted: its entry must fit inline with an overflow descriptor, and
/// two such keys must fit in a branch with three children.
pub fn max_key_len(page_size: usize) -> usize {
    max_inline_entry(page_size) - LEAF_SLOT_LEN - OVERFLOW_DESC_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e<'a>(k: &'a [u8], v: &'a [u8]) -> LeafEntry<'a> {
        LeafEntry {
            key: k,
            value: v,
            overflow: false,
        }
    }

    #[test]
    fn leaf_round_trips_and_validates() {
        let entries = [e(b"a", b"1"), e(b"bb", b""), e(b"ccc", b"333")];
        let mut p = build_leaf(4096, &entries);
        assert_eq!(leaf_size(&entries), LeafPage::new(&p).used_bytes());
        seal(&mut p, 7, 42);
        assert_eq!(validate(&p, 42).unwrap(), PageKind::Leaf);
        let l = LeafPage::new(&p);
        assert_eq!(l.len(), 3);
        assert_eq!(l.key(1), b"bb");
        assert_eq!(l.value(2), LeafValue::Inline(b"333"));
        assert_eq!(l.find(b"bb"), Ok(1));
        assert_eq!(l.find(b"b"), Err(1));
        assert_eq!(l.find(b"z"), Err(3));
        assert_eq!(txn_id(&p), 7);
    }

    #[test]
    fn validate_names_what_is_wrong() {
        let mut p = build_leaf(1024, &[e(b"a", b"1")]);
        seal(&mut p, 1, 3);
        let err = validate(&p, 4).unwrap_err().to_string();
        assert!(
            err.contains("page 4") && err.contains("claims to be page 3"),
            "{err}"
        );
        p[100] ^= 1;
        assert!(validate(&p, 3)
            .unwrap_err()
            .to_string()
            .contains("checksum mismatch"));
        // A page with a valid checksum but out-of-order keys is refused too.
        let mut q = build_leaf(1024, &[e(b"b", b""), e(b"a", b"")]);
        seal(&mut q, 1, 9);
        assert!(validate(&q, 9)
            .unwrap_err()
            .to_string()
            .contains("out of order"));
    }

    #[test]
    fn branch_finds_children_by_separator() {
        let kids: Vec<ChildRef> = (10..13)
            .map(|p| ChildRef {
                page: p,
                crc: p as u32,
            })
            .collect();
        let keys: [&[u8]; 2] = [b"g", b"p"];
        let mut p = build_branch(4096, &kids, &keys);
        assert_eq!(branch_size(keys), BranchPage::new(&p).used_bytes());
        seal(&mut p, 1, 5);
        validate(&p, 5).unwrap();
        let b = BranchPage::new(&p);
        assert_eq!(b.find_child(b"a"), 0);
        assert_eq!(b.find_child(b"g"), 1);
        assert_eq!(b.find_child(b"o"), 1);
        assert_eq!(b.find_child(b"p"), 2);
        assert_eq!(b.find_child(b"zz"), 2);
        assert_eq!(b.child(2), ChildRef { page: 12, crc: 12 });
    }

    #[test]
    fn limits_allow_two_max_entries_per_page() {
        for ps in [MIN_PAGE_SIZE, 4096, MAX_PAGE_SIZE] {
            let k = max_key_len(ps);
            assert!(HEADER_LEN + 2 * max_inline_entry(ps) <= ps);
            assert!(branch_size([vec![0u8; k].as_slice(), vec![0u8; k].as_slice()]) <= ps);
        }
        assert!(max_key_len(4096) >= 1536);
    }
}
