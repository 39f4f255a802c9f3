//! The page file (copy-on-write B+tree) against redb, the reference B+tree.
//!
//! Workloads (16-byte random keys, 256-byte values; results in docs/benchmarks.md):
//! * `btree_point_reads`: random point reads over 1M keys, one read transaction per batch
//!   of 1,000 lookups. Each database is loaded once, outside the timed loop.
//! * `btree_durable_commits`: 1,000 commits of one insert each, fsync per commit
//!   (mnemo `Durable`, redb `Immediate`).
//! * `btree_bulk_load`: 1M keys in 1,000-key transactions into a fresh database. Every
//!   batch commits without fsync (mnemo `Deferred`, redb `None`) and a final empty
//!   transaction commits durably (mnemo `Durable`, redb `Immediate`), so the timed work
//!   ends with everything on disk. Opt-in: runs only with `MNEMO_BENCH_BULK_LOAD=1` set,
//!   since it takes about 11 minutes.
//!
//! Caches: mnemo `cache_bytes` = 1 GiB for reads and durable commits, 8 GiB for the bulk
//! load; redb at its default cache size (1 GiB) throughout. The bulk load's batches are
//! not durable, so mnemo reuses no freed page until the final commit and the file grows to
//! several GiB; 8 GiB keeps every page cached. (With 1 GiB, pages are re-read from disk
//! and validated, which currently fails: mnemo writes a branch page with one child once a
//! table passes roughly 37k of these entries. See docs/benchmarks.md.)
//!
//! The read workload counts lookups that find nothing and prints the count: every key
//! looked up was loaded, so a non-zero count means lost entries.
//! Files live in a temporary directory under `target/` (on disk), not under /tmp, which
//! may be a tmpfs.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use mnemo_storage::{Database, DatabaseOptions, Durability};
use redb::TableDefinition;

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 256;
/// Keys in the read and bulk-load workloads.
const KEYS: u64 = 1_000_000;
/// Lookups per read transaction.
const READ_BATCH: u64 = 1_000;
/// Single-insert commits per iteration of the durable-commit workload.
const COMMITS: u64 = 1_000;
/// Keys per transaction in the bulk load.
const LOAD_BATCH: u64 = 1_000;
/// Keys per transaction when preloading the read workload's databases (untimed).
const PRELOAD_BATCH: u64 = 100_000;

const TABLE: &str = "bench";
const REDB_TABLE: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new(TABLE);

fn mnemo_options() -> DatabaseOptions {
    mnemo_options_with_cache(1 << 30)
}

fn mnemo_options_with_cache(cache_bytes: usize) -> DatabaseOptions {
    DatabaseOptions {
        cache_bytes,
        ..DatabaseOptions::default()
    }
}

/// splitmix64: a fixed, well-mixed sequence without pulling in a `rand` dependency.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`th key of a key stream: 16 random-looking bytes, a pure function of `(stream, i)`
/// so readers can regenerate any loaded key without storing the set.
fn key(stream: u64, i: u64) -> [u8; KEY_LEN] {
    let a = mix(stream.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ i);
    let b = mix(a ^ 0xA076_1D64_78BD_642F);
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

fn value(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    for (n, chunk) in v.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(i ^ ((n as u64) << 40)).to_le_bytes());
    }
    v
}

/// A temporary directory on disk: under the cargo target directory, never /tmp.
fn scratch_dir() -> tempfile::TempDir {
    let base: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bench-scratch");
    std::fs::create_dir_all(&base).expect("create bench scratch directory");
    tempfile::Builder::new()
        .prefix("btree-")
        .tempdir_in(base)
        .expect("create temporary directory")
}

fn mnemo_open(dir: &Path) -> Database {
    Database::open_path(dir.join("mnemo.db"), mnemo_options()).expect("open mnemo page file")
}

fn mnemo_open_big_cache(dir: &Path) -> Database {
    Database::open_path(dir.join("mnemo.db"), mnemo_options_with_cache(8 << 30))
        .expect("open mnemo page file")
}

fn redb_open(dir: &Path) -> redb::Database {
    // Default builder: 1 GiB cache (90% read, 10% write buffer).
    redb::Database::create(dir.join("redb.db")).expect("create redb database")
}

/// Inserts keys `0..n` of `stream` in `batch`-key transactions, each committed with
/// `durability`; a final empty transaction commits durably.
fn mnemo_load(db: &Database, stream: u64, n: u64, batch: u64, durability: Durability) {
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let mut tx = db.begin_write().expect("mnemo begin_write");
        {
            let mut t = tx.open_table(TABLE).expect("mnemo open_table");
            for j in i..end {
                t.insert(&key(stream, j), &value(j)).expect("mnemo insert");
            }
        }
        tx.commit(durability).expect("mnemo commit");
        i = end;
    }
    let tx = db.begin_write().expect("mnemo begin_write");
    tx.commit(Durability::Durable)
        .expect("mnemo durable commit");
}

fn redb_load(db: &redb::Database, stream: u64, n: u64, batch: u64, durability: redb::Durability) {
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let mut tx = db.begin_write().expect("redb begin_write");
        tx.set_durability(durability);
        {
            let mut t = tx.open_table(REDB_TABLE).expect("redb open_table");
            for j in i..end {
                t.insert(key(stream, j).as_slice(), value(j).as_slice())
                    .expect("redb insert");
            }
        }
        tx.commit().expect("redb commit");
        i = end;
    }
    let mut tx = db.begin_write().expect("redb begin_write");
    tx.set_durability(redb::Durability::Immediate);
    tx.commit().expect("redb durable commit");
}

const LOAD_STREAM: u64 = 1;
const COMMIT_STREAM: u64 = 2;

/// Index of the `n`th lookup: a random key among the `KEYS` loaded.
fn lookup_index(n: u64) -> u64 {
    mix(n ^ 0x5EED_0000_0000_0000) % KEYS
}

/// One read transaction of [`READ_BATCH`] random lookups; counts lookups that found nothing.
fn mnemo_read_batch(db: &Database, n: &mut u64, misses: &mut u64) -> usize {
    let tx = db.begin_read().expect("mnemo begin_read");
    let t = tx.open_table(TABLE).expect("mnemo open_table");
    let mut bytes = 0;
    for _ in 0..READ_BATCH {
        let k = key(LOAD_STREAM, lookup_index(*n));
        *n += 1;
        match t.get(&k).expect("mnemo get") {
            Some(v) => bytes += v.len(),
            None => *misses += 1,
        }
    }
    black_box(bytes)
}

fn point_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("btree_point_reads");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(READ_BATCH));

    let dir = scratch_dir();

    {
        // Loaded on first use, so a filter that skips this benchmark skips the load.
        let mut loaded = None;
        let mut n = 0u64;
        let mut misses = 0u64;
        g.bench_function(BenchmarkId::new("mnemo", KEYS), |b| {
            let db = loaded.get_or_insert_with(|| {
                let db = mnemo_open(dir.path());
                // Durable batches: freed pages are reused, the file stays near its live size.
                mnemo_load(&db, LOAD_STREAM, KEYS, PRELOAD_BATCH, Durability::Durable);
                db
            });
            b.iter(|| mnemo_read_batch(db, &mut n, &mut misses))
        });
        if loaded.is_some() {
            eprintln!("mnemo: {misses} of {n} lookups found nothing");
        }
    }

    // The same file reopened with page caches smaller than its ~300 MB: most leaf
    // lookups miss the cache and are read from the file (through the OS page cache)
    // and verified. The server's default cache is 64 MiB.
    for cache_mib in [64usize, 256] {
        let mut loaded = None;
        let mut n = 0u64;
        let mut misses = 0u64;
        let id = BenchmarkId::new(format!("mnemo_cache_{cache_mib}MiB"), KEYS);
        g.bench_function(id, |b| {
            let db = loaded.get_or_insert_with(|| {
                if !dir.path().join("mnemo.db").exists() {
                    let db = mnemo_open(dir.path());
                    mnemo_load(&db, LOAD_STREAM, KEYS, PRELOAD_BATCH, Durability::Durable);
                }
                let opts = mnemo_options_with_cache(cache_mib << 20);
                Database::open_path(dir.path().join("mnemo.db"), opts).expect("mnemo reopen")
            });
            b.iter(|| mnemo_read_batch(db, &mut n, &mut misses))
        });
        if loaded.is_some() {
            eprintln!("mnemo, {cache_mib} MiB cache: {misses} of {n} lookups found nothing");
        }
    }

    {
        let mut loaded = None;
        let mut n = 0u64;
        let mut misses = 0u64;
        g.bench_function(BenchmarkId::new("redb", KEYS), |b| {
            let db = loaded.get_or_insert_with(|| {
                let db = redb_open(dir.path());
                redb_load(
                    &db,
                    LOAD_STREAM,
                    KEYS,
                    PRELOAD_BATCH,
                    redb::Durability::Immediate,
                );
                db
            });
            b.iter(|| {
                let tx = db.begin_read().expect("redb begin_read");
                let t = tx.open_table(REDB_TABLE).expect("redb open_table");
                let mut bytes = 0;
                for _ in 0..READ_BATCH {
                    let k = key(LOAD_STREAM, lookup_index(n));
                    n += 1;
                    match t.get(k.as_slice()).expect("redb get") {
                        Some(v) => bytes += v.value().len(),
                        None => misses += 1,
                    }
                }
                black_box(bytes)
            })
        });
        if loaded.is_some() {
            eprintln!("redb: {misses} of {n} lookups found nothing");
        }
    }
    g.finish();
}

fn durable_commits(c: &mut Criterion) {
    let mut g = c.benchmark_group("btree_durable_commits");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(COMMITS));

    let dir = scratch_dir();

    {
        let db = mnemo_open(dir.path());
        // Keys keep accumulating across iterations: every commit inserts a new key.
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("mnemo", COMMITS), |b| {
            b.iter(|| {
                for _ in 0..COMMITS {
                    let mut tx = db.begin_write().expect("mnemo begin_write");
                    tx.open_table(TABLE)
                        .expect("mnemo open_table")
                        .insert(&key(COMMIT_STREAM, n), &value(n))
                        .expect("mnemo insert");
                    tx.commit(Durability::Durable).expect("mnemo commit");
                    n += 1;
                }
            })
        });
    }

    {
        let db = redb_open(dir.path());
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("redb", COMMITS), |b| {
            b.iter(|| {
                for _ in 0..COMMITS {
                    let mut tx = db.begin_write().expect("redb begin_write");
                    tx.set_durability(redb::Durability::Immediate);
                    tx.open_table(REDB_TABLE)
                        .expect("redb open_table")
                        .insert(key(COMMIT_STREAM, n).as_slice(), value(n).as_slice())
                        .expect("redb insert");
                    tx.commit().expect("redb commit");
                    n += 1;
                }
            })
        });
    }
    g.finish();
}

/// Times `load` on a fresh, empty database per iteration; creating the database and
/// deleting its directory afterwards are not timed.
fn time_fresh_loads<D>(iters: u64, open: impl Fn(&Path) -> D, load: impl Fn(&D)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = scratch_dir();
        let db = open(dir.path());
        let start = Instant::now();
        load(&db);
        total += start.elapsed();
        drop(db);
        drop(dir);
    }
    total
}

/// Set to run the bulk load (about 11 minutes: criterion needs at least 11 loads per
/// database).
const BULK_LOAD_ENV: &str = "MNEMO_BENCH_BULK_LOAD";

fn bulk_load(c: &mut Criterion) {
    if std::env::var_os(BULK_LOAD_ENV).is_none() {
        eprintln!("btree_bulk_load skipped: set {BULK_LOAD_ENV}=1 to run it");
        return;
    }
    let mut g = c.benchmark_group("btree_bulk_load");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(KEYS));

    g.bench_function(BenchmarkId::new("mnemo", KEYS), |b| {
        b.iter_custom(|iters| {
            time_fresh_loads(iters, mnemo_open_big_cache, |db| {
                mnemo_load(db, LOAD_STREAM, KEYS, LOAD_BATCH, Durability::Deferred)
            })
        })
    });
    g.bench_function(BenchmarkId::new("redb", KEYS), |b| {
        b.iter_custom(|iters| {
            time_fresh_loads(iters, redb_open, |db| {
                redb_load(db, LOAD_STREAM, KEYS, LOAD_BATCH, redb::Durability::None)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, point_reads, durable_commits, bulk_load);
criterion_main!(benches);
