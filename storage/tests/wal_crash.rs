//! Crash tests through the fault-injecting directory: random appends, truncations and
//! purges, stopped by an I/O failure countdown or a plain power cut, then a crash image
//! (unsynced writes dropped, kept or torn) is reopened. Every acknowledged entry must be
//! there with its payload, indexes contiguous, and nothing unacknowledged but the effect
//! of the one operation in flight. Seeds are reproducible: a failure names its seed.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mnemo_storage::wal::{FaultDir, Record, Wal, WalOptions};
use mnemo_storage::{CrashMode, StorageError, TestRng};

const SEEDS: u64 = 400;
const GENERATIONS: usize = 3;

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 1024,
        force_pwrite: false,
        max_spare_segments: 1,
    }
}

/// The log as acknowledged: contiguous entries and the next index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    entries: Vec<Record>,
    next: Option<u64>,
}

impl Model {
    fn first(&self) -> Option<u64> {
        self.entries.first().map(|r| r.index)
    }

    fn append(&mut self, recs: &[Record]) {
        self.entries.extend_from_slice(recs);
        self.next = recs.last().map(|r| r.index + 1).or(self.next);
    }

    fn truncate(&mut self, from: u64) {
        if self.next.is_some_and(|n| from >= n) {
            return;
        }
        self.entries.retain(|r| r.index < from);
        self.next = Some(from);
    }
}

#[derive(Debug)]
enum InFlight {
    None,
    Append(Vec<Record>),
    Truncate(u64),
    Purge(u64),
}

fn record(rng: &mut TestRng, index: u64) -> Record {
    let mut payload = vec![0u8; rng.below(120) as usize];
    rng.fill(&mut payload);
    Record {
        index,
        record_type: rng.below(4) as u8,
        payload,
    }
}

/// Does `got` (first index, entries, next) match what `x` allows, given that entries
/// below `floor` may have been purged?
fn matches(got: &Model, x: &Model, floor: u64) -> bool {
    if got.next != x.next {
        return false;
    }
    let Some(gf) = got.first() else {
        // Empty is right only if nothing at or above the floor was acknowledged.
        return x.entries.iter().all(|r| r.index < floor);
    };
    let Some(xf) = x.first() else { return false };
    if gf < xf || gf > xf.max(floor) {
        return false;
    }
    x.entries[(gf - xf) as usize..] == got.entries[..]
}

/// One life of the WAL: open, run until a failure or a cut, crash. Returns the crash image.
fn generation(
    seed: u64,
    gen: usize,
    dir: &FaultDir,
    model: &Model,
    rng: &mut TestRng,
) -> (FaultDir, Vec<Model>, u64) {
    let countdown = rng.chance(3, 4);
    if countdown {
        dir.fail_after(rng.below(150));
    }
    let mut acked = model.clone();
    let mut floor = 0;
    let mut in_flight = InFlight::None;
    if let Ok(wal) = Wal::open_dir(Arc::new(dir.clone()), opts()) {
        assert_eq!(wal.next_index(), acked.next, "seed {seed} gen {gen}");
        for _ in 0..60 {
            let next = acked.next.unwrap_or(1);
            let first = acked.first().unwrap_or(next);
            let op = rng.below(12);
            let result = match op {
                0..=8 => {
                    let n = 1 + rng.below(4);
                    let recs: Vec<Record> = (next..next + n).map(|i| record(rng, i)).collect();
                    in_flight = InFlight::Append(recs.clone());
                    wal.append(recs)
                }
                9 => {
                    let from = first + rng.below(next - first + 1);
                    in_flight = InFlight::Truncate(from);
                    wal.truncate(from)
                }
                10 => {
                    let before = first + rng.below(next - first + 2);
                    in_flight = InFlight::Purge(before);
                    wal.purge(before).map(|_| ())
                }
                _ if !countdown => break,
                _ => continue,
            };
            match result {
                Ok(()) => match std::mem::replace(&mut in_flight, InFlight::None) {
                    InFlight::Append(recs) => acked.append(&recs),
                    InFlight::Truncate(from) => acked.truncate(from),
                    InFlight::Purge(before) => floor = floor.max(before),
                    InFlight::None => {}
                },
                Err(StorageError::Io(_)) => break,
                Err(e) => panic!("seed {seed} gen {gen}: unexpected error {e}"),
            }
        }
        // The power cut happens with the WAL still open.
        let mode = if rng.chance(1, 2) {
            CrashMode::Random
        } else {
            CrashMode::DropAll
        };
        let image = dir.crash_image(mode, rng);
        drop(wal);
        return (image, candidates(&acked, &in_flight, &mut floor), floor);
    }
    let mode = if rng.chance(1, 2) {
        CrashMode::Random
    } else {
        CrashMode::DropAll
    };
    (dir.crash_image(mode, rng), vec![acked], floor)
}

/// The states the log may be in after a crash: the acknowledged one, or with the
/// operation in flight (partly, for an append) applied.
fn candidates(acked: &Model, in_flight: &InFlight, floor: &mut u64) -> Vec<Model> {
    let mut out = vec![acked.clone()];
    match in_flight {
        InFlight::Append(recs) => {
            for k in 1..=recs.len() {
                let mut m = acked.clone();
                m.append(&recs[..k]);
                out.push(m);
            }
        }
        InFlight::Truncate(from) => {
            let mut m = acked.clone();
            m.truncate(*from);
            out.push(m);
        }
        InFlight::Purge(before) => *floor = (*floor).max(*before),
        InFlight::None => {}
    }
    out
}

#[test]
fn acknowledged_entries_survive_random_crashes() {
    let mut recovered_nonempty = 0;
    for seed in 0..SEEDS {
        let mut rng = TestRng::new(seed);
        let mut dir = FaultDir::new();
        let mut model = Model {
            entries: Vec::new(),
            next: None,
        };
        for gen in 0..GENERATIONS {
            let (image, allowed, floor) = generation(seed, gen, &dir, &model, &mut rng);
            let wal = Wal::open_dir(Arc::new(image.clone()), opts())
                .unwrap_or_else(|e| panic!("seed {seed} gen {gen}: reopen failed: {e}"));
            let entries = wal.read_range(0..u64::MAX).unwrap();
            for w in entries.windows(2) {
                assert_eq!(w[1].index, w[0].index + 1, "seed {seed} gen {gen}: gap");
            }
            let got = Model {
                entries,
                next: wal.next_index(),
            };
            assert_eq!(got.first(), wal.first_index());
            assert!(
                allowed.iter().any(|x| matches(&got, x, floor)),
                "seed {seed} gen {gen}: recovered {:?}..{:?} next {:?}, allowed {:?}",
                got.first(),
                got.entries.last().map(|r| r.index),
                got.next,
                allowed
                    .iter()
                    .map(|m| (m.first(), m.entries.len(), m.next))
                    .collect::<Vec<_>>()
            );
            recovered_nonempty += usize::from(!got.entries.is_empty());
            drop(wal);
            model = got;
            dir = image;
        }
    }
    // The schedule must actually exercise recovery of real logs.
    assert!(recovered_nonempty > SEEDS as usize, "{recovered_nonempty}");
}
