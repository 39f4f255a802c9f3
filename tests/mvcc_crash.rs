//! Power cuts and failing disks under the MVCC store: after reopening, the store is
//! exactly the state of some apply batch no older than the last durable one, and the
//! raft metadata written with that batch names it (so replaying the log from there
//! rebuilds the rest).
//!
//! Each seed applies random batches over a fault-injecting backend, commits some of them
//! durably, sometimes makes the disk fail in the middle of a commit, and cuts the power
//! at random points. The reopened store is compared, at every readable revision, with a
//! store rebuilt by replaying the batches up to the one its metadata names.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo::command::{Command, CommandResponse, Op};
use mnemo::mvcc::{LeaseInfo, Store};
use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::request_op::Request;
use mnemo_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use mnemo_proto::mvccpb::KeyValue;
use mnemo_storage::{
    CrashMode, Database, DatabaseOptions, Durability, FaultBackend, MemoryBackend, TestRng,
};

const APPLIED: &[u8] = b"applied";

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: 1024,
        cache_bytes: 1 << 20,
    }
}

fn key(rng: &mut TestRng) -> Vec<u8> {
    format!("k{}", rng.below(12)).into_bytes()
}

fn value(rng: &mut TestRng) -> Vec<u8> {
    // Now and then a value that needs overflow pages.
    let len = if rng.chance(1, 10) {
        1500
    } else {
        rng.below(40) as usize
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn command(rng: &mut TestRng, current_rev: i64) -> Command {
    Command::new(match rng.below(10) {
        0..=3 => Op::Put(PutRequest {
            key: key(rng),
            value: value(rng),
            lease: if rng.chance(1, 4) {
                1 + rng.below(3) as i64
            } else {
                0
            },
            ..Default::default()
        }),
        4 => Op::DeleteRange(DeleteRangeRequest {
            key: key(rng),
            range_end: if rng.chance(1, 2) {
                key(rng)
            } else {
                Vec::new()
            },
            prev_kv: true,
        }),
        5 | 6 => Op::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Greater as i32,
                target: CompareTarget::Version as i32,
                key: key(rng),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::Version(rng.below(3) as i64)),
            }],
            success: vec![
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: key(rng),
                        value: value(rng),
                        ..Default::default()
                    })),
                },
                RequestOp {
                    request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                        key: key(rng),
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: key(rng),
                    value: value(rng),
                    ..Default::default()
                })),
            }],
        }),
        7 => Op::Compaction(CompactionRequest {
            revision: current_rev - rng.below(4) as i64,
            physical: false,
        }),
        8 => Op::LeaseGrant(LeaseGrantRequest {
            ttl: 10,
            id: 1 + rng.below(3) as i64,
        }),
        _ => Op::LeaseRevoke(LeaseRevokeRequest {
            id: 1 + rng.below(3) as i64,
        }),
    })
}

/// Everything a client or the lessor can observe.
#[derive(Debug, PartialEq)]
struct Observed {
    revision: i64,
    compact: i64,
    /// Every key at every readable revision.
    history: Vec<Vec<KeyValue>>,
    leases: Vec<(LeaseInfo, Vec<Vec<u8>>)>,
    hash_kv: (u32, i64, i64),
    hash: u32,
}

fn observe(s: &Store) -> Observed {
    let revision = s.current_revision();
    let compact = s.compact_revision();
    let history = (compact.max(1)..=revision)
        .map(|rev| {
            s.range(&RangeRequest {
                key: b"\0".to_vec(),
                range_end: b"\0".to_vec(),
                revision: rev,
                ..Default::default()
            })
            .unwrap()
            .kvs
        })
        .collect();
    Observed {
        revision,
        compact,
        history,
        leases: s
            .leases()
            .into_iter()
            .map(|l| {
                let keys = s.lease_keys(l.id);
                (l, keys)
            })
            .collect(),
        hash_kv: s.hash_kv(0).unwrap(),
        hash: s.hash().unwrap(),
    }
}

fn applied(s: &Store) -> Option<u64> {
    s.get_meta(APPLIED)
        .unwrap()
        .map(|v| u64::from_le_bytes(v.try_into().unwrap()))
}

/// A store rebuilt by replaying `log[..n]` in one batch per entry, never crashing.
fn replay(log: &[Vec<Command>], n: usize) -> Store {
    let db = Database::create(Arc::new(MemoryBackend::new()), opts()).unwrap();
    let s = Store::from_database(db).unwrap();
    for (i, batch) in log[..n].iter().enumerate() {
        let mut a = s.begin_apply().unwrap();
        for c in batch {
            a.apply(c);
        }
        a.set_meta(APPLIED, &(i as u64).to_le_bytes()).unwrap();
        a.commit(Durability::Deferred).unwrap();
    }
    s
}

fn open(fault: &FaultBackend) -> Store {
    let db = Database::open(Arc::new(fault.clone()), opts()).unwrap();
    Store::from_database(db).unwrap()
}

/// Cuts the power, reopens, and checks the store against the replayed log. Returns the
/// reopened store and backend; `log` is cut back to what the store holds.
fn crash_and_check(
    fault: &FaultBackend,
    rng: &mut TestRng,
    log: &mut Vec<Vec<Command>>,
    last_durable: Option<u64>,
    ctx: &str,
) -> (Store, FaultBackend) {
    let image = fault.crash_image(CrashMode::Random, rng);
    let fault = FaultBackend::from_bytes(image);
    let store = open(&fault);
    let got = applied(&store);
    assert!(
        got >= last_durable,
        "{ctx}: reopened at batch {got:?}, but batch {last_durable:?} was durable"
    );
    let n = got.map_or(0, |b| b as usize + 1);
    assert!(
        n <= log.len(),
        "{ctx}: reopened at batch {got:?} of {}",
        log.len()
    );
    let expected = replay(log, n);
    assert_eq!(
        observe(&store),
        observe(&expected),
        "{ctx}: state of batch {got:?}"
    );
    log.truncate(n);
    (store, fault)
}

fn run_seed(seed: u64) {
    let mut rng = TestRng::new(seed);
    let mut fault = FaultBackend::new();
    let mut store =
        Store::from_database(Database::create(Arc::new(fault.clone()), opts()).unwrap()).unwrap();
    let mut log: Vec<Vec<Command>> = Vec::new();
    let mut last_durable: Option<u64> = None;
    for step in 0..60 {
        let ctx = format!("seed {seed} step {step}");
        let batch_no = log.len() as u64;
        let cmds: Vec<Command> = (0..1 + rng.below(6))
            .map(|_| command(&mut rng, store.current_revision()))
            .collect();
        let durable = rng.chance(1, 3);
        let failing = rng.chance(1, 8);
        let mut a = store.begin_apply().unwrap();
        let mut storage_failed = false;
        for c in &cmds {
            if let CommandResponse::Error(mnemo::error::Error::Internal(_)) = a.apply(c) {
                storage_failed = true;
            }
        }
        assert!(!storage_failed, "{ctx}: storage failed before any fault");
        a.set_meta(APPLIED, &batch_no.to_le_bytes()).unwrap();
        log.push(cmds);
        if failing {
            fault.fail_after(rng.below(40));
        }
        let res = a.commit(if durable {
            Durability::Durable
        } else {
            Durability::Deferred
        });
        match res {
            Ok(_) if durable => last_durable = Some(batch_no),
            Ok(_) => {}
            Err(_) => {
                // The disk failed mid-commit: the batch may or may not have survived.
                assert!(failing, "{ctx}: commit failed without a fault");
                fault.heal();
                drop(store);
                (store, fault) = crash_and_check(&fault, &mut rng, &mut log, last_durable, &ctx);
                last_durable = applied(&store);
                continue;
            }
        }
        fault.heal();
        if rng.chance(1, 6) {
            drop(store);
            (store, fault) = crash_and_check(&fault, &mut rng, &mut log, last_durable, &ctx);
            // Whatever survived is on disk now.
            last_durable = applied(&store);
        }
    }
}

#[test]
fn crashes_reopen_a_whole_batch_no_older_than_the_last_durable_one() {
    for seed in 0..40 {
        run_seed(seed);
    }
}
