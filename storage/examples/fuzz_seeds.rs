//! Writes valid inputs for the fuzz targets (fuzz/README.md) into `fuzz/corpus/`, so the
//! fuzzer starts from files whose checksums hold instead of random bytes it can never
//! get past a checksum with.
//!
//! `cargo run -p mnemo-storage --example fuzz_seeds -- fuzz/corpus`
#![allow(clippy::unwrap_used)] // a developer tool: fail loudly

use std::path::Path;
use std::sync::Arc;

use mnemo_storage::wal::{FaultDir, Record, Wal, WalOptions};
use mnemo_storage::{Database, DatabaseOptions, Durability, MemoryBackend};

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let root = Path::new(&root);
    let wal_dir = root.join("wal_segment");
    let page_dir = root.join("page_file");
    std::fs::create_dir_all(&wal_dir).unwrap();
    std::fs::create_dir_all(&page_dir).unwrap();

    // WAL segments as the wal_segment target opens them (segment_size 4096).
    for (n, truncate) in [(1u64, false), (5, false), (12, true), (30, false)] {
        let dir = FaultDir::new();
        let opts = WalOptions {
            segment_size: 4096,
            ..WalOptions::default()
        };
        let wal = Wal::open_dir(Arc::new(dir.clone()), opts).unwrap();
        for i in 1..=n {
            let payload = vec![i as u8; (i * 13 % 90) as usize];
            wal.append(vec![Record {
                index: i,
                record_type: 1,
                payload,
            }])
            .unwrap();
        }
        if truncate {
            wal.truncate(n / 2).unwrap();
        }
        drop(wal);
        let bytes = dir.files().remove("0000000000000001.wal").unwrap();
        // Only the written part: the zero-filled rest adds nothing to mutate.
        let used = bytes.len() - bytes.iter().rev().take_while(|&&b| b == 0).count();
        let keep = used.next_multiple_of(8).max(64);
        std::fs::write(wal_dir.join(format!("seed-{n}")), &bytes[..keep]).unwrap();
    }

    // Small page files: 1 KiB pages, a few tables, an overflow value, a free list.
    for keys in [0u32, 8, 60] {
        let backend = MemoryBackend::new();
        let opts = DatabaseOptions {
            page_size: 1024,
            cache_bytes: 1 << 20,
        };
        let db = Database::create(Arc::new(backend.clone()), opts).unwrap();
        let mut w = db.begin_write().unwrap();
        for name in ["a", "gone"] {
            let mut t = w.open_table(name).unwrap();
            for i in 0..keys {
                let v = vec![i as u8; if i == 3 { 1500 } else { 20 }];
                t.insert(format!("{name}-{i:04}").as_bytes(), &v).unwrap();
            }
        }
        w.commit(Durability::Durable).unwrap();
        let mut w = db.begin_write().unwrap();
        w.delete_table("gone").unwrap();
        w.commit(Durability::Durable).unwrap();
        drop(db);
        std::fs::write(page_dir.join(format!("seed-{keys}")), backend.to_bytes()).unwrap();
    }
}
