//! Restart cost of the MVCC store's in-memory key index: time to open (scan the history
//! table and rebuild the index) and the resident memory it takes, for N keys.
//!
//! Not a criterion benchmark: one load, then a few timed opens, figures printed.
//! `cargo bench -p mnemo-benches --bench mvcc_open` (N = `MNEMO_OPEN_KEYS`, default 1M).
//! Keys look like Kubernetes registry paths (`/registry/pods/ns-NNN/pod-NNNNNNN`, ~35
//! bytes), values are 256 bytes, loaded in apply batches of 10,000 puts, each durable.
//! Results: docs/mvcc.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mnemo::command::{Command, Op};
use mnemo::mvcc::Store;
use mnemo_proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest};
use mnemo_storage::{DatabaseOptions, Durability};

const BATCH: u64 = 10_000;

fn key(i: u64) -> Vec<u8> {
    format!("/registry/pods/ns-{:03}/pod-{i:07}", i % 1000).into_bytes()
}

fn scratch_dir() -> tempfile::TempDir {
    let base: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bench-scratch");
    std::fs::create_dir_all(&base).expect("create bench scratch directory");
    tempfile::Builder::new()
        .prefix("mvcc-open-")
        .tempdir_in(base)
        .expect("create temporary directory")
}

/// Resident set size of this process in bytes (Linux).
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn opts(cache_bytes: usize) -> DatabaseOptions {
    DatabaseOptions {
        cache_bytes,
        ..DatabaseOptions::default()
    }
}

/// Opens the store at `path` and prints "seconds rss_growth_bytes": run in a fresh
/// process so that memory freed by the load does not hide the index's growth.
fn measure_open(path: &Path, cache: usize, n: u64) {
    let before = rss();
    let t = Instant::now();
    let store = Store::open_with(path, opts(cache)).expect("reopen");
    let took = t.elapsed();
    let after = rss();
    assert_eq!(store.indexed_keys() as u64, n);
    let r = store
        .range(&RangeRequest {
            key: key(n / 2),
            ..Default::default()
        })
        .expect("range");
    assert_eq!(r.kvs.len(), 1);
    println!("{} {}", took.as_secs_f64(), after.saturating_sub(before));
}

fn load(path: &Path, n: u64) {
    let value = vec![b'v'; 256];
    let t = Instant::now();
    let store = Store::open_with(path, opts(64 << 20)).expect("open");
    let mut i = 0;
    while i < n {
        let mut a = store.begin_apply().expect("begin_apply");
        for j in i..(i + BATCH).min(n) {
            a.apply(&Command::new(Op::Put(PutRequest {
                key: key(j),
                value: value.clone(),
                ..Default::default()
            })));
        }
        a.commit(Durability::Durable).expect("commit");
        i += BATCH;
    }
    println!(
        "loaded {n} keys in {:.1} s; file {} MiB",
        t.elapsed().as_secs_f64(),
        store.db_size() >> 20
    );
}

/// Overwrites every tenth key, then times the batch that compacts: its commit walks the
/// whole index under the store's write lock.
fn measure_compaction(path: &Path, n: u64) {
    let store = Store::open_with(path, opts(64 << 20)).expect("open");
    let mut a = store.begin_apply().expect("begin_apply");
    for j in (0..n).step_by(10) {
        a.apply(&Command::new(Op::Put(PutRequest {
            key: key(j),
            value: b"again".to_vec(),
            ..Default::default()
        })));
    }
    a.commit(Durability::Durable).expect("commit");
    let rev = store.current_revision();
    let mut a = store.begin_apply().expect("begin_apply");
    a.apply(&Command::new(Op::Compaction(CompactionRequest {
        revision: rev,
        physical: false,
    })));
    // A reader keeps reading meanwhile; its slowest read shows how long readers wait. The
    // same window without the commit gives the machine's own noise.
    let window = |work: &mut dyn FnMut()| {
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut slowest = std::time::Duration::ZERO;
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i = (i + 7919) % n;
                    let t = Instant::now();
                    store
                        .range(&RangeRequest {
                            key: key(i),
                            ..Default::default()
                        })
                        .expect("range");
                    slowest = slowest.max(t.elapsed());
                }
                slowest
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            work();
            std::thread::sleep(std::time::Duration::from_millis(50));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            reader.join().expect("reader")
        })
    };
    let idle = window(&mut || std::thread::sleep(std::time::Duration::from_millis(200)));
    let mut batch = Some(a);
    let mut commit = std::time::Duration::ZERO;
    let slowest = window(&mut || {
        let t = Instant::now();
        if let Some(a) = batch.take() {
            a.commit(Durability::Deferred).expect("commit");
        }
        commit = t.elapsed();
    });
    let t = Instant::now();
    let removed = store.remove_compacted().expect("remove_compacted");
    println!(
        "compaction over {n} keys ({removed} revisions dropped): commit {:.0} ms, slowest \
         concurrent read {:.1} ms (idle window: {:.1} ms); removing the records {:.2} s",
        commit.as_secs_f64() * 1000.0,
        slowest.as_secs_f64() * 1000.0,
        idle.as_secs_f64() * 1000.0,
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let n: u64 = std::env::var("MNEMO_OPEN_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(child) = std::env::var_os("MNEMO_OPEN_CHILD") {
        let cache = std::env::var("MNEMO_OPEN_CACHE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8 << 20);
        measure_open(Path::new(&child), cache, n);
        return;
    }
    // `cargo bench` passes `--bench`; any other argument (a filter) that does not name
    // this benchmark skips it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"mvcc_open".contains(&f)) {
        return;
    }
    let dir = scratch_dir();
    // MNEMO_OPEN_DB keeps the loaded file at that path (and reuses it if present).
    let path = std::env::var_os("MNEMO_OPEN_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("mvcc.db"));
    if !path.exists() {
        load(&path, n);
    }
    let exe = std::env::current_exe().expect("current exe");
    for (label, cache) in [
        ("8 MiB page cache", 8usize << 20),
        ("256 MiB page cache", 256 << 20),
    ] {
        for _ in 0..2 {
            let out = std::process::Command::new(&exe)
                .env("MNEMO_OPEN_CHILD", &path)
                .env("MNEMO_OPEN_CACHE", cache.to_string())
                .env("MNEMO_OPEN_KEYS", n.to_string())
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut f = text.split_whitespace();
            let secs: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            let bytes: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            println!(
                "open {n} keys, {label}: {secs:.2} s, RSS +{} MiB ({} bytes/key)",
                bytes >> 20,
                bytes / n.max(1)
            );
        }
    }
    measure_compaction(&path, n);
}
