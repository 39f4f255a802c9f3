//! Regression: check() sized its page map and its list of leaked pages by the page count a commit slot claims, so a damaged slot claiming 2^40 pages made it allocate gigabytes and abort.
//!
//! Pages past the end of the file can only be free (a crash may keep a commit's file
//! shrink and lose its slot). check() now tracks only those individually and reports the
//! rest of the claimed range in one line.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{Database, DatabaseOptions, MemoryBackend};

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
    }
}

/// A one-page file whose only valid slot (checksum and all) claims `page_count` pages.
fn file_claiming(page_count: u64) -> Vec<u8> {
    let backend = MemoryBackend::new();
    Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut b = backend.to_bytes();
    let slot = &mut b[256..384];
    slot.fill(0);
    slot[0..8].copy_from_slice(&5u64.to_le_bytes()); // txn
    slot[40..48].copy_from_slice(&page_count.to_le_bytes());
    slot[48..56].copy_from_slice(&4u64.to_le_bytes()); // base txn
    let crc = crc32c::crc32c(&slot[..124]);
    slot[124..128].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn check_reports_a_claimed_range_past_the_file_in_one_line() {
    for page_count in [2, 1 << 16, 1 << 40, u64::MAX] {
        let db = Database::open(
            Arc::new(MemoryBackend::from_bytes(file_claiming(page_count))),
            opts(),
        )
        .unwrap();
        let report = db.check().unwrap();
        let want = format!(
            "{} of pages 1..{page_count} lie past the end",
            page_count - 1
        );
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].contains(&want), "{:?}", report.problems);
        assert_eq!(report.stats.page_count, page_count);
        assert_eq!(report.stats.free_pages, 0);
    }
}
