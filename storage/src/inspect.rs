//! Read-only views of a page file for offline tools: the header and both commit slots as
//! they are on disk, and any page decoded whether it validates or not. Nothing here
//! writes, and nothing read is trusted: a damaged file is described, with the page and
//! the reason, never indexed out of bounds.
//!
//! [`crate::Database::page_map`] says which tree each page of a committed state belongs
//! to; this module is what works even when the file cannot be opened.

use crate::backend::StorageBackend;
use crate::error::{Location, Result, StorageError};
use crate::header::{self, Slot, HEADER_BYTES, SLOT_LEN, SLOT_OFFSETS};
use crate::page::{self, BranchPage, ChildRef, LeafPage, OverflowRef, PageId, PageKind};

/// Page 0 as it is on disk.
#[derive(Debug, Clone)]
pub struct FileHeader {
    pub page_size: usize,
    pub file_len: u64,
    /// Both commit slots, each decoded or with the reason it is invalid.
    pub slots: [std::result::Result<Slot, String>; 2],
}

impl FileHeader {
    /// The valid slot with the higher transaction id: the one opening tries first.
    pub fn newest(&self) -> Option<(usize, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().ok().map(|s| (i, s)))
            .max_by_key(|(_, s)| s.txn)
    }
}

/// Reads and validates the header of the page file on `backend`; the slots are decoded
/// but not trusted.
pub fn read_header(backend: &dyn StorageBackend) -> Result<FileHeader> {
    let file_len = backend.len()?;
    if file_len < HEADER_BYTES as u64 {
        return Err(StorageError::corrupted(
            Location::Header,
            format!("file is {file_len} bytes, too short for a header"),
        ));
    }
    let mut head = vec![0u8; HEADER_BYTES];
    backend.read_at(0, &mut head)?;
    let page_size = header::decode_header(&head)?;
    let slot = |i: usize| {
        let off = SLOT_OFFSETS[i] as usize;
        Slot::decode(&head[off..off + SLOT_LEN])
    };
    Ok(FileHeader {
        page_size,
        file_len,
        slots: [slot(0), slot(1)],
    })
}

/// The raw bytes of page `id`, validated or not.
pub fn read_page(backend: &dyn StorageBackend, page_size: usize, id: PageId) -> Result<Vec<u8>> {
    let off = id
        .checked_mul(page_size as u64)
        .ok_or_else(|| StorageError::corrupted(Location::Page(id), "page number too large"))?;
    let file_len = backend.len()?;
    if off.saturating_add(page_size as u64) > file_len {
        return Err(StorageError::corrupted(
            Location::Page(id),
            format!("page lies beyond the end of the file ({file_len} bytes)"),
        ));
    }
    let mut buf = vec![0u8; page_size];
    backend.read_at(off, &mut buf)?;
    Ok(buf)
}

/// What a page's header says, and whether the page validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSummary {
    pub id: PageId,
    /// The kind byte as a kind; `None` for an unknown byte (see `kind_byte`).
    pub kind: Option<PageKind>,
    pub kind_byte: u8,
    /// Entries (leaf) or children (branch); 0 for overflow pages.
    pub count: usize,
    pub txn: u64,
    /// The page id the page records for itself (equal to `id` on a sound page).
    pub claimed_id: u64,
    pub stored_crc: u32,
    /// Why the page does not validate; `None` when it does.
    pub problem: Option<String>,
    /// Bytes holding the header and content (valid pages only, else 0).
    pub used_bytes: usize,
    /// Leaf entries whose value is in overflow pages.
    pub overflow_values: usize,
}

impl PageSummary {
    /// Fraction of the page in use.
    pub fn fill(&self, page_size: usize) -> f64 {
        self.used_bytes as f64 / page_size as f64
    }
}

/// Summarizes page `id` from its bytes (`bytes.len()` is the page size).
pub fn summarize_page(bytes: &[u8], id: PageId) -> PageSummary {
    let kind_byte = bytes.first().copied().unwrap_or(0);
    let header_ok = bytes.len() >= page::HEADER_LEN;
    let mut s = PageSummary {
        id,
        kind: PageKind::from_byte(kind_byte),
        kind_byte,
        count: if header_ok { page::count(bytes) } else { 0 },
        txn: if header_ok { page::txn_id(bytes) } else { 0 },
        claimed_id: if header_ok { page::page_id(bytes) } else { 0 },
        stored_crc: if header_ok {
            page::stored_crc(bytes)
        } else {
            0
        },
        problem: None,
        used_bytes: 0,
        overflow_values: 0,
    };
    if bytes.iter().all(|&b| b == 0) {
        s.problem = Some("all zero: never written".into());
        return s;
    }
    match page::validate(bytes, id) {
        Err(e) => s.problem = Some(reason(e)),
        Ok(PageKind::Leaf) => {
            let leaf = LeafPage::new(bytes);
            s.used_bytes = leaf.used_bytes();
            s.overflow_values = (0..leaf.len()).filter(|&i| leaf.is_overflow(i)).count();
        }
        Ok(PageKind::Branch) => s.used_bytes = BranchPage::new(bytes).used_bytes(),
        Ok(PageKind::Overflow) => {
            let (_, data) = page::overflow_parts(bytes);
            s.used_bytes = page::OVF_DATA + data.len();
        }
    }
    s
}

/// The decoded content of a page that validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageContent {
    /// Key/value entries in key order.
    Leaf(Vec<LeafItem>),
    /// Children; child `i` holds keys from separator `i - 1` (inclusive) to separator `i`.
    Branch {
        children: Vec<ChildRef>,
        separators: Vec<Vec<u8>>,
    },
    /// One link of an overflow chain.
    Overflow { next: PageId, data: Vec<u8> },
}

/// One leaf entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafItem {
    pub key: Vec<u8>,
    pub value: ItemValue,
}

/// Where a leaf entry's value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemValue {
    Inline(Vec<u8>),
    Overflow(OverflowRef),
}

/// Decodes page `id`; an error names the page and what is wrong with it.
pub fn decode_page(bytes: &[u8], id: PageId) -> Result<PageContent> {
    match page::validate(bytes, id)? {
        PageKind::Leaf => {
            let leaf = LeafPage::new(bytes);
            let items = (0..leaf.len())
                .map(|i| LeafItem {
                    key: leaf.key(i).to_vec(),
                    value: match leaf.value(i) {
                        page::LeafValue::Inline(v) => ItemValue::Inline(v.to_vec()),
                        page::LeafValue::Overflow(r) => ItemValue::Overflow(r),
                    },
                })
                .collect();
            Ok(PageContent::Leaf(items))
        }
        PageKind::Branch => {
            let b = BranchPage::new(bytes);
            Ok(PageContent::Branch {
                children: (0..b.children()).map(|i| b.child(i)).collect(),
                separators: (0..b.children() - 1).map(|i| b.key(i).to_vec()).collect(),
            })
        }
        PageKind::Overflow => {
            let (next, data) = page::overflow_parts(bytes);
            Ok(PageContent::Overflow {
                next,
                data: data.to_vec(),
            })
        }
    }
}

/// The reason of a corruption error, without the location (callers print the page).
fn reason(e: StorageError) -> String {
    match e {
        StorageError::Corrupted { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Database, DatabaseOptions, Durability, MemoryBackend, PageUse};

    fn sample() -> (Arc<MemoryBackend>, Database) {
        let backend = Arc::new(MemoryBackend::new());
        let db = Database::create(backend.clone(), DatabaseOptions::default()).expect("create");
        let mut tx = db.begin_write().expect("write");
        {
            let mut t = tx.open_table("t").expect("table");
            for i in 0..500u32 {
                t.insert(&i.to_be_bytes(), &[7u8; 100]).expect("insert");
            }
            t.insert(b"big", &vec![1u8; 10_000]).expect("insert big");
        }
        tx.commit(Durability::Durable).expect("commit");
        (backend, db)
    }

    #[test]
    fn header_pages_and_map_agree() {
        let (backend, db) = sample();
        let h = read_header(backend.as_ref()).expect("header");
        assert_eq!(h.page_size, 4096);
        let (_, newest) = h.newest().expect("a valid slot");
        assert_eq!(newest.txn, db.last_txn());
        let (report, map) = db.page_map().expect("map");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(map.uses.len() as u64, map.page_count);
        assert_eq!(map.uses[0], PageUse::Header);
        let table = map.trees.iter().position(|t| t == "t").expect("table t") as u32;
        let mut overflow = 0;
        for (id, u) in map.uses.iter().enumerate().skip(1) {
            let bytes = read_page(backend.as_ref(), h.page_size, id as u64).expect("page");
            let s = summarize_page(&bytes, id as u64);
            match u {
                PageUse::Tree { tree, kind } => {
                    assert_eq!(s.problem, None, "page {id}");
                    assert_eq!(s.kind, Some(*kind), "page {id}");
                    if *tree == table && *kind == PageKind::Overflow {
                        overflow += 1;
                    }
                }
                PageUse::Free => {}
                other => panic!("page {id}: unexpected {other:?}"),
            }
        }
        assert_eq!(overflow, 3, "10,000 bytes take three overflow pages");
    }

    #[test]
    fn damaged_page_is_described_not_trusted() {
        let (backend, db) = sample();
        let (_, map) = db.page_map().expect("map");
        let leaf = map
            .uses
            .iter()
            .position(|u| matches!(u, PageUse::Tree { kind: PageKind::Leaf, tree } if *tree >= 2))
            .expect("a table leaf") as u64;
        let mut bytes = read_page(backend.as_ref(), 4096, leaf).expect("page");
        assert!(
            matches!(decode_page(&bytes, leaf), Ok(PageContent::Leaf(items)) if !items.is_empty())
        );
        bytes[100] ^= 0xff;
        let s = summarize_page(&bytes, leaf);
        assert!(
            s.problem.as_deref().unwrap_or("").contains("checksum"),
            "{s:?}"
        );
        let e = decode_page(&bytes, leaf).expect_err("damaged page");
        assert!(e.to_string().contains(&format!("page {leaf}")), "{e}");
        // Garbage of every kind byte and a short buffer never panic.
        for k in 0..=255u8 {
            let mut g = vec![0xa5u8; 4096];
            g[0] = k;
            let _ = summarize_page(&g, 3);
            let _ = decode_page(&g, 3);
        }
        let _ = summarize_page(&[1, 2, 3], 1);
        assert!(read_page(backend.as_ref(), 4096, 1 << 40).is_err());
    }
}
