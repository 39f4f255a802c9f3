//! The MVCC store: apply throughput and reads (results in docs/mvcc.md).
//!
//! * `mvcc_apply/put_batch_1000`: one apply batch of 1,000 puts (40-byte keys, 256-byte
//!   values) over a store of 100k keys, committed `Deferred` (the raft WAL is the
//!   durability point).
//! * `mvcc_apply/hot_key_put`: one apply batch of a single put to a key that already has
//!   100,000 kept revisions (etcd's benchmark with its default key space of 1, or a
//!   lock or counter key between compactions).
//! * `mvcc_apply/one_put`: the same for a key with one revision, the baseline.
//! * `mvcc_range/get`: a single-key range at the current revision.
//! * `mvcc_range/prefix_100`: a 100-key prefix range.
//! * `mvcc_range/get_past_revision`: a single key read at an old revision.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mnemo::command::{Command, Op};
use mnemo::mvcc::Store;
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest};
use mnemo_storage::Durability;

const PRELOAD: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("/registry/configmaps/ns-{:03}/cm-{i:07}", i % 1000).into_bytes()
}

fn scratch_dir() -> tempfile::TempDir {
    let base: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bench-scratch");
    std::fs::create_dir_all(&base).expect("create bench scratch directory");
    tempfile::Builder::new()
        .prefix("mvcc-")
        .tempdir_in(base)
        .expect("create temporary directory")
}

fn put(k: Vec<u8>) -> Command {
    Command::new(Op::Put(PutRequest {
        key: k,
        value: vec![b'v'; 256],
        ..Default::default()
    }))
}

fn preload(store: &Store) {
    let mut i = 0;
    while i < PRELOAD {
        let mut a = store.begin_apply().expect("begin_apply");
        for j in i..(i + 10_000).min(PRELOAD) {
            a.apply(&put(key(j)));
        }
        a.commit(Durability::Durable).expect("commit");
        i += 10_000;
    }
}

fn bench(c: &mut Criterion) {
    let dir = scratch_dir();
    let store = Store::open(&dir.path().join("mvcc.db")).expect("open");
    preload(&store);

    let mut g = c.benchmark_group("mvcc_apply");
    g.throughput(Throughput::Elements(1000));
    let mut next = 0u64;
    g.bench_function("put_batch_1000", |b| {
        b.iter(|| {
            let mut a = store.begin_apply().expect("begin_apply");
            for _ in 0..1000 {
                a.apply(&put(key(next % PRELOAD)));
                next += 7919;
            }
            black_box(a.commit(Durability::Deferred).expect("commit"));
        })
    });
    g.throughput(Throughput::Elements(1));
    let hot = b"/registry/leases/kube-system/hot".to_vec();
    let mut i = 0;
    while i < PRELOAD {
        let mut a = store.begin_apply().expect("begin_apply");
        for _ in 0..10_000 {
            a.apply(&put(hot.clone()));
        }
        a.commit(Durability::Deferred).expect("commit");
        i += 10_000;
    }
    g.bench_function("one_put", |b| {
        b.iter(|| {
            let mut a = store.begin_apply().expect("begin_apply");
            a.apply(&put(key(PRELOAD + next)));
            next += 1;
            black_box(a.commit(Durability::Deferred).expect("commit"));
        })
    });
    g.bench_function("hot_key_put", |b| {
        b.iter(|| {
            let mut a = store.begin_apply().expect("begin_apply");
            a.apply(&put(hot.clone()));
            black_box(a.commit(Durability::Deferred).expect("commit"));
        })
    });
    g.finish();
    store.sync().expect("sync");

    let mut g = c.benchmark_group("mvcc_range");
    let mut i = 0u64;
    g.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7919) % PRELOAD;
            black_box(
                store
                    .range(&RangeRequest {
                        key: key(i),
                        ..Default::default()
                    })
                    .expect("range"),
            )
        })
    });
    g.bench_function("prefix_100", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            // Keys of one namespace: every 1000th key, so ns-NNN/ holds 100 of them.
            let prefix = format!("/registry/configmaps/ns-{i:03}/").into_bytes();
            let mut end = prefix.clone();
            *end.last_mut().expect("non-empty") += 1;
            black_box(
                store
                    .range(&RangeRequest {
                        key: prefix,
                        range_end: end,
                        ..Default::default()
                    })
                    .expect("range"),
            )
        })
    });
    g.bench_function("get_past_revision", |b| {
        b.iter(|| {
            i = (i + 7919) % PRELOAD;
            black_box(
                store
                    .range(&RangeRequest {
                        key: key(i),
                        revision: PRELOAD as i64,
                        ..Default::default()
                    })
                    .expect("range"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
