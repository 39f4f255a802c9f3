//! Regression: splitting a full branch while appending keys in order made a right branch with a single child, which fails validation when read back, so a durable commit could not be reopened (open fell back to the previous commit) and check() reported corruption.
//!
//! Cached pages are not re-validated, so the bad branch only showed once it was read from
//! the file: on reopen, or after the page cache evicted it.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{Database, DatabaseOptions, Durability, MemoryBackend};

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: 1024,
        cache_bytes: 1 << 20,
    }
}

#[test]
fn ascending_inserts_reopen_with_every_key() {
    // Long keys make branches fill (and split) after a few dozen leaves.
    let key = |i: u32| format!("{i:08}{}", "k".repeat(100)).into_bytes();
    for n in [200u32, 800, 3000] {
        let backend = MemoryBackend::new();
        let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
        let mut w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..n {
                t.insert(&key(i), &i.to_le_bytes()).unwrap();
            }
        }
        w.commit(Durability::Durable).unwrap();
        let txn = db.last_txn();
        let report = db.check().unwrap();
        assert!(report.is_ok(), "n {n}: {:#?}", report.problems);
        assert!(report.stats.max_depth() >= 3, "n {n}: {:?}", report.stats);

        let (db, open) = Database::open_with_report(
            Arc::new(MemoryBackend::from_bytes(backend.to_bytes())),
            opts(),
        )
        .unwrap();
        assert_eq!(open.txn, txn, "n {n}: {open:?}");
        assert!(open.fell_back.is_none(), "n {n}: {open:?}");
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        assert_eq!(t.len(), u64::from(n));
        let keys: Vec<Vec<u8>> = t
            .iter()
            .unwrap()
            .map(|e| e.unwrap().key().to_vec())
            .collect();
        assert_eq!(keys, (0..n).map(key).collect::<Vec<_>>(), "n {n}");
    }
}
