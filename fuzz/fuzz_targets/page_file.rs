//! Opens arbitrary bytes as a page file (in memory). Nothing may panic: opening either
//! fails with an error or yields a database whose check, table listing, reads in both
//! directions, and a write + commit each succeed or return an error.
//! storage/tests/pagefile_fuzz.rs runs the same body over a deterministic corpus in
//! `cargo test`.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mnemo_storage::{Database, DatabaseOptions, Durability, MemoryBackend};

fuzz_target!(|data: &[u8]| {
    exercise(data);
});

/// Bounds every scan, so a damaged tree cannot make the target run for ever.
const MAX_ENTRIES: usize = 100_000;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
    }
}

fn exercise(data: &[u8]) {
    let backend = MemoryBackend::from_bytes(data.to_vec());
    let Ok(db) = Database::open(Arc::new(backend.clone()), opts()) else {
        return;
    };
    if !read_everything(&db) {
        return;
    }
    let Ok(mut w) = db.begin_write() else { return };
    let names = w.list_tables().unwrap_or_default();
    let big = vec![0xA5u8; 3 * db.page_size()];
    let wrote = (|| -> mnemo_storage::Result<()> {
        let mut t = w.open_table("fuzz")?;
        t.insert(b"small", b"value")?;
        t.insert(b"big", &big)?;
        t.remove(b"small")?;
        if let Some((name, _)) = names.first() {
            let mut t = w.open_table(name)?;
            let first = t.range::<&[u8]>(..)?.next_key()?;
            if let Some(k) = first {
                t.insert(&k, b"overwritten")?;
                t.remove_range(k.as_slice()..)?;
            }
        }
        if let Some((name, _)) = names.get(1) {
            w.delete_table(name)?;
        }
        Ok(())
    })();
    if wrote.is_err() || w.commit(Durability::Durable).is_err() {
        return;
    }
    read_everything(&db);
    // The file as committed reopens.
    if let Ok(db) = Database::open(
        Arc::new(MemoryBackend::from_bytes(backend.to_bytes())),
        opts(),
    ) {
        read_everything(&db);
    }
}

/// Runs check() and reads every table forwards, backwards and by key. Returns false if
/// the snapshot could not even be listed.
fn read_everything(db: &Database) -> bool {
    let _ = db.check();
    let Ok(r) = db.begin_read() else { return false };
    let Ok(tables) = r.list_tables() else {
        return false;
    };
    for (name, _) in tables {
        let Ok(t) = r.open_table(&name) else { continue };
        let _ = t.len();
        let mut keys = Vec::new();
        if let Ok(it) = t.iter() {
            for e in it.take(MAX_ENTRIES) {
                match e {
                    Ok(e) => keys.push(e.key().to_vec()),
                    Err(_) => break,
                }
            }
        }
        if let Ok(it) = t.iter() {
            for e in it.rev().take(MAX_ENTRIES) {
                if e.is_err() {
                    break;
                }
            }
        }
        for k in keys.iter().step_by(keys.len() / 16 + 1) {
            let _ = t.get(k);
            let _ = t.count_range(k.as_slice()..=k.as_slice());
        }
    }
    true
}
