//! Durable WAL appends per second: 1, 16 and 256 concurrent appenders of 256-byte
//! records on the io_uring and pwrite paths, and the raw baseline of one thread doing
//! 256-byte pwrite + fdatasync on a preallocated file. Results: docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mnemo_storage::wal::{IoPath, Record, Wal, WalOptions};
use parking_lot::Mutex;

const RECORD: usize = 256;

/// Runs `total` durable single-record appends from `appenders` threads; returns the time.
fn appends(wal: &Arc<Wal>, next: &Arc<Mutex<u64>>, appenders: usize, total: u64) -> Duration {
    let per = total.div_ceil(appenders as u64);
    let barrier = Arc::new(Barrier::new(appenders + 1));
    let handles: Vec<_> = (0..appenders)
        .map(|_| {
            let (wal, next, barrier) = (wal.clone(), next.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per {
                    let (tx, rx) = mpsc::channel();
                    {
                        // Index assignment and enqueue are one step, as in a Raft log store.
                        let mut n = next.lock();
                        let rec = Record {
                            index: *n,
                            record_type: 0,
                            payload: vec![7; RECORD],
                        };
                        wal.append_with(vec![rec], Box::new(move |r| tx.send(r).unwrap()))
                            .unwrap();
                        *n += 1;
                    }
                    rx.recv().unwrap().unwrap();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn wal_appends(c: &mut Criterion) {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut g = c.benchmark_group("wal_durable_append_256B");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for force_pwrite in [false, true] {
        let dir = root
            .path()
            .join(if force_pwrite { "pwrite" } else { "uring" });
        let opts = WalOptions {
            force_pwrite,
            ..WalOptions::default()
        };
        let wal = Arc::new(Wal::open(&dir, opts).unwrap());
        let path = match wal.io_path() {
            IoPath::IoUring => "io_uring",
            IoPath::Pwrite => "pwrite",
        };
        let next = Arc::new(Mutex::new(1u64));
        for appenders in [1usize, 16, 256] {
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(BenchmarkId::new(path, appenders), &appenders, |b, &n| {
                b.iter_custom(|iters| appends(&wal, &next, n, iters.max(n as u64)));
            });
        }
    }
    g.finish();
}

fn raw_baseline(c: &mut Criterion) {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = root.path().join("raw");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    const SIZE: u64 = 64 << 20;
    let zeros = vec![0u8; 1 << 20];
    for i in 0..SIZE / (1 << 20) {
        f.write_all_at(&zeros, i << 20).unwrap();
    }
    f.sync_all().unwrap();
    let rec = [7u8; RECORD + 32]; // the same bytes a framed WAL record occupies
    let mut off = 0u64;
    let mut g = c.benchmark_group("raw_pwrite_fdatasync_256B");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    g.bench_function("preallocated", |b| {
        b.iter(|| {
            f.write_all_at(&rec, off).unwrap();
            f.sync_data().unwrap();
            off = (off + rec.len() as u64) % (SIZE - rec.len() as u64);
        })
    });
    g.finish();
}

criterion_group!(benches, raw_baseline, wal_appends);
criterion_main!(benches);
