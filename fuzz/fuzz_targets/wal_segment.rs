//! Opens arbitrary bytes as the only WAL segment (through the in-memory directory).
//! Recovery must not panic: it either succeeds, and then the log is readable and
//! appendable, or reports corruption. storage/tests/wal_fuzz.rs runs the same body over
//! a deterministic corpus in `cargo test`.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mnemo_storage::wal::{FaultDir, Record, Wal, WalOptions};
use mnemo_storage::StorageError;

fuzz_target!(|data: &[u8]| {
    let dir = FaultDir::from_files([("0000000000000001.wal".to_string(), data.to_vec())]);
    let opts = WalOptions { segment_size: 4096, ..WalOptions::default() };
    match Wal::open_dir(Arc::new(dir), opts) {
        Ok(wal) => {
            let entries = wal.read_range(0..u64::MAX).expect("recovered entries are readable");
            assert_eq!(entries.len() as u64, wal.last_index().map_or(0, |l| l - wal.first_index().unwrap_or(l) + 1));
            if let Some(next) = wal.next_index().or(Some(1)) {
                if next != u64::MAX {
                    let r = Record { index: next, record_type: 0, payload: b"after".to_vec() };
                    wal.append(vec![r]).expect("append after recovery");
                }
            }
        }
        Err(StorageError::Corrupted { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
});
