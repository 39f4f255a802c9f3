//! A deterministic fuzz pass over the page file, the `cargo test` twin of
//! fuzz/fuzz_targets/page_file.rs (same per-input body, plus a tally of what happened).
//!
//! Inputs: random bytes; and valid page files (several tables, overflow values, deep trees,
//! deferred commits, a free list) damaged by flipped bytes, zeroed ranges, truncation,
//! swapped or copied pages, and pages altered then resealed with a correct checksum (so
//! damage gets past checksum validation into the tree logic). Each input must open and
//! behave (check() may report problems, reads may fail) or fail to open with an error:
//! never panic.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{
    page, Database, DatabaseOptions, Durability, MemoryBackend, StorageError, TestRng,
};

/// Bounds every scan, so a damaged tree cannot make an input run for ever.
const MAX_ENTRIES: usize = 100_000;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
    }
}

#[derive(Debug, Default)]
struct Tally {
    inputs: u64,
    open_failed: u64,
    opened: u64,
    committed: u64,
}

/// The fuzz target's body (keep in step with fuzz/fuzz_targets/page_file.rs).
fn exercise(data: &[u8], tally: &mut Tally) {
    tally.inputs += 1;
    let backend = MemoryBackend::from_bytes(data.to_vec());
    let db = match Database::open(Arc::new(backend.clone()), opts()) {
        Ok(db) => db,
        Err(e) => {
            // Errors are values, and say something.
            assert!(!e.to_string().is_empty());
            assert!(!matches!(e, StorageError::Closed), "{e}");
            tally.open_failed += 1;
            return;
        }
    };
    tally.opened += 1;
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
    tally.committed += 1;
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

/// Valid page files to damage: 1 KiB pages with a deep table, overflow values, a deleted
/// table (so the free list is not empty) and a deferred commit after the last durable one;
/// and a 4 KiB file with a few small tables.
fn seeds() -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for (ps, keys) in [(1024usize, 1200u32), (4096, 300)] {
        let backend = MemoryBackend::new();
        let db = Database::create(
            Arc::new(backend.clone()),
            DatabaseOptions {
                page_size: ps,
                cache_bytes: 1 << 20,
            },
        )
        .unwrap();
        let mut rng = TestRng::new(ps as u64);
        let mut w = db.begin_write().unwrap();
        for name in ["a", "b", "c", "gone"] {
            let mut t = w.open_table(name).unwrap();
            for i in 0..keys / 4 {
                let mut v = vec![0u8; if i % 37 == 0 { 2 * ps } else { 40 }];
                rng.fill(&mut v);
                t.insert(format!("{name}-{i:06}").as_bytes(), &v).unwrap();
            }
        }
        {
            let mut t = w.open_table("deep").unwrap();
            for i in 0..keys {
                t.insert(format!("{i:08}-{}", "k".repeat(60)).as_bytes(), b"v")
                    .unwrap();
            }
        }
        w.commit(Durability::Durable).unwrap();
        let mut w = db.begin_write().unwrap();
        w.delete_table("gone").unwrap();
        w.open_table("a")
            .unwrap()
            .remove_range(&b"a-000050"[..]..)
            .unwrap();
        w.commit(Durability::Durable).unwrap();
        let mut w = db.begin_write().unwrap();
        w.open_table("b")
            .unwrap()
            .insert(b"deferred", &[1; 3000])
            .unwrap();
        w.commit(Durability::Deferred).unwrap();
        let report = db.check().unwrap();
        assert!(report.is_ok(), "{:#?}", report.problems);
        if ps == 1024 {
            assert!(report.stats.max_depth() >= 3, "{:?}", report.stats);
            assert!(report.stats.overflow_pages > 0 && report.stats.free_pages > 0);
        }
        out.push((ps, backend.to_bytes()));
    }
    out
}

/// One random kind of damage to a valid file.
fn damage(rng: &mut TestRng, ps: usize, good: &[u8]) -> Vec<u8> {
    let mut b = good.to_vec();
    let pages = b.len() / ps;
    let some_page = |rng: &mut TestRng| rng.below(pages as u64) as usize;
    match rng.below(8) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let start = rng.below(b.len() as u64) as usize;
            let len = (rng.below(2 * ps as u64) as usize).min(b.len() - start);
            b[start..start + len].fill(0);
        }
        2 => b.truncate(rng.below(b.len() as u64) as usize),
        3 => {
            let (x, y) = (some_page(rng), some_page(rng));
            let px = b[x * ps..(x + 1) * ps].to_vec();
            b.copy_within(y * ps..(y + 1) * ps, x * ps);
            b[y * ps..(y + 1) * ps].copy_from_slice(&px);
        }
        4 => {
            // Random bytes over one page.
            let p = some_page(rng);
            rng.fill(&mut b[p * ps..(p + 1) * ps]);
        }
        _ => {
            // Alter a page (or copy another page over it, keeping its id), then reseal it
            // so it passes its own checksum: damage the tree logic must handle.
            let p = 1 + rng.below(pages as u64 - 1) as usize;
            if rng.chance(1, 3) {
                let q = 1 + rng.below(pages as u64 - 1) as usize;
                b.copy_within(q * ps..(q + 1) * ps, p * ps);
                b[p * ps + 16..p * ps + 24].copy_from_slice(&(p as u64).to_le_bytes());
            }
            for _ in 0..1 + rng.below(4) {
                // Mostly the header and the first entries, where counts and offsets live.
                let span = if rng.chance(1, 2) { 64 } else { ps as u64 };
                let i = p * ps + rng.below(span) as usize;
                if (p * ps + 4..p * ps + 8).contains(&i) || (p * ps + 16..p * ps + 24).contains(&i)
                {
                    continue;
                }
                b[i] = if rng.chance(1, 2) {
                    b[i] ^ (1 << rng.below(8))
                } else {
                    rng.next_u64() as u8
                };
            }
            let page = &mut b[p * ps..(p + 1) * ps];
            let crc = page::checksum(page);
            page[4..8].copy_from_slice(&crc.to_le_bytes());
        }
    }
    b
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = TestRng::new(1);
    let mut tally = Tally::default();
    for n in 0..600 {
        let len = match n % 4 {
            0 => rng.below(700) as usize,
            1 => rng.below(8192) as usize,
            _ => rng.below(40_000) as usize,
        };
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        if n % 3 == 0 && len >= 640 {
            // A valid header, so the slots and pages behind it are what is random.
            let good = &seeds_header();
            data[..good.len()].copy_from_slice(good);
        }
        exercise(&data, &mut tally);
    }
    assert_eq!(tally.inputs, 600);
    assert!(tally.open_failed > 0, "{tally:?}");
}

/// The first 256 bytes (magic, version, page size, header checksum) of a new file.
fn seeds_header() -> Vec<u8> {
    let backend = MemoryBackend::new();
    Database::create(Arc::new(backend.clone()), opts()).unwrap();
    backend.to_bytes()[..256].to_vec()
}

#[test]
fn damaged_valid_files_never_panic() {
    let mut tally = Tally::default();
    for (ps, good) in seeds() {
        let mut first = Tally::default();
        exercise(&good, &mut first);
        assert_eq!(first.committed, 1, "an undamaged file takes a commit");
        let mut rng = TestRng::new(ps as u64 + 7);
        for _ in 0..1200 {
            let bad = damage(&mut rng, ps, &good);
            exercise(&bad, &mut tally);
        }
    }
    eprintln!("{tally:?}");
    // The damage reaches every stage: failed opens, files that open, and commits on them.
    assert!(tally.open_failed >= 100, "{tally:?}");
    assert!(tally.opened >= 500, "{tally:?}");
    assert!(tally.committed >= 200, "{tally:?}");
}

/// A file whose (valid) commit slot claims far more pages than the file holds.
fn huge_page_count_file(page_count: u64) -> Vec<u8> {
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
fn a_slot_claiming_more_pages_than_the_file_never_panics() {
    let mut tally = Tally::default();
    for page_count in [2, 1 << 16, 1 << 40, u64::MAX] {
        exercise(&huge_page_count_file(page_count), &mut tally);
    }
    // The file's only valid slot claims pages it does not hold: open refuses it
    // (pagefile_huge_page_count.rs covers the fallback to another slot).
    assert_eq!(tally.open_failed, 4, "{tally:?}");
}
