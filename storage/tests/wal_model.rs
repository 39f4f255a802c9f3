//! Model test: random sequences of append / truncate / purge / reopen against a Vec.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mnemo_storage::wal::{FaultDir, Record, Wal, WalOptions};
use mnemo_storage::{CrashMode, TestRng};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: u64,
        len: usize,
    },
    /// Truncate at `first + pct% of the span`.
    Truncate(u8),
    Purge(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..6, 0usize..200).prop_map(|(count, len)| Op::Append { count, len }),
        1 => any::<u8>().prop_map(Op::Truncate),
        1 => any::<u8>().prop_map(Op::Purge),
        1 => Just(Op::Reopen),
    ]
}

fn open(dir: &FaultDir) -> Wal {
    let opts = WalOptions {
        segment_size: 2048,
        force_pwrite: false,
        max_spare_segments: 2,
    };
    Wal::open_dir(Arc::new(dir.clone()), opts).unwrap()
}

fn point(first: u64, next: u64, pct: u8) -> u64 {
    first + (next - first + 1) * u64::from(pct) / 256
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_a_vec(ops in proptest::collection::vec(op(), 1..60)) {
        let mut dir = FaultDir::new();
        let mut wal = open(&dir);
        let mut model: Vec<Record> = Vec::new();
        let mut next = 1u64;
        wal.append(vec![]).unwrap();
        for op in ops {
            let first = model.first().map_or(next, |r| r.index);
            match op {
                Op::Append { count, len } => {
                    let recs: Vec<Record> = (next..next + count)
                        .map(|i| Record { index: i, record_type: (i % 5) as u8, payload: vec![i as u8; len] })
                        .collect();
                    wal.append(recs.clone()).unwrap();
                    model.extend(recs);
                    next += count;
                }
                Op::Truncate(pct) => {
                    let from = point(first, next, pct);
                    wal.truncate(from).unwrap();
                    if from < next {
                        model.retain(|r| r.index < from);
                        next = from;
                    }
                }
                Op::Purge(pct) => {
                    let before = point(first, next, pct);
                    wal.purge(before).unwrap();
                    // Whole segments only: the WAL may keep some entries below `before`.
                    if let Some(f) = wal.first_index() {
                        prop_assert!(f <= before.max(first));
                        model.retain(|r| r.index >= f);
                    } else {
                        prop_assert!(model.iter().all(|r| r.index < before));
                        model.clear();
                    }
                }
                Op::Reopen => {
                    drop(wal);
                    dir = dir.crash_image(CrashMode::DropAll, &mut TestRng::new(0));
                    wal = open(&dir);
                    prop_assert_eq!(wal.recovery_report().truncated_bytes, 0);
                }
            }
            prop_assert_eq!(wal.first_index(), model.first().map(|r| r.index));
            prop_assert_eq!(wal.last_index(), model.last().map(|r| r.index));
            if !model.is_empty() || next != 1 {
                prop_assert_eq!(wal.next_index(), Some(next));
            }
            prop_assert_eq!(wal.read_range(0..u64::MAX).unwrap(), model.clone());
        }
    }
}
