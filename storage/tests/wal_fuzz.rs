//! A deterministic pass of the `wal_segment` fuzz target's body (fuzz/fuzz_targets/) over
//! random bytes and over valid segments with bytes flipped, zeroed or cut: recovery never
//! panics and either succeeds (and the log is then readable and appendable) or reports
//! `Corrupted`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mnemo_storage::wal::{FaultDir, Record, Wal, WalOptions};
use mnemo_storage::{StorageError, TestRng};

const NAME: &str = "0000000000000001.wal";

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    }
}

/// The fuzz target's body. Returns whether recovery succeeded.
fn open_segment(data: &[u8]) -> bool {
    let dir = FaultDir::from_files([(NAME.to_string(), data.to_vec())]);
    match Wal::open_dir(Arc::new(dir), opts()) {
        Ok(wal) => {
            let entries = wal.read_range(0..u64::MAX).unwrap();
            let expect = match (wal.first_index(), wal.last_index()) {
                (Some(f), Some(l)) => l - f + 1,
                _ => 0,
            };
            assert_eq!(entries.len() as u64, expect);
            for w in entries.windows(2) {
                assert_eq!(w[1].index, w[0].index + 1);
            }
            let next = wal.next_index().unwrap_or(1);
            if next != u64::MAX {
                let r = Record {
                    index: next,
                    record_type: 0,
                    payload: b"after".to_vec(),
                };
                wal.append(vec![r]).unwrap();
            }
            true
        }
        Err(StorageError::Corrupted { .. }) => false,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// A real segment with `n` entries appended one by one, and one with a truncation.
fn valid_segments() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (n, truncate) in [(5u64, false), (12, true), (30, false)] {
        let dir = FaultDir::new();
        let wal = Wal::open_dir(Arc::new(dir.clone()), opts()).unwrap();
        for i in 1..=n {
            let payload = vec![i as u8; (i * 13 % 90) as usize];
            wal.append(vec![Record {
                index: i,
                record_type: 1,
                payload,
            }])
            .unwrap();
        }
        if truncate {
            wal.truncate(n / 2).unwrap();
            wal.append(vec![Record {
                index: n / 2,
                record_type: 2,
                payload: vec![1],
            }])
            .unwrap();
        }
        drop(wal);
        out.push(dir.files().remove(NAME).unwrap());
    }
    out
}

#[test]
fn random_and_mutated_segments_never_panic() {
    let mut rng = TestRng::new(0xF022);
    let (mut ok, mut corrupted) = (0, 0);
    let mut tally = |recovered: bool| if recovered { ok += 1 } else { corrupted += 1 };
    // Random bytes, sometimes behind a valid header copied from a real segment.
    let bases = valid_segments();
    for i in 0..600 {
        let mut data = vec![0u8; rng.below(600) as usize];
        rng.fill(&mut data);
        if i % 2 == 0 && data.len() >= 64 {
            data[..64].copy_from_slice(&bases[0][..64]);
        }
        tally(open_segment(&data));
    }
    for base in &bases {
        // Every valid segment recovers untouched.
        assert!(open_segment(base));
        for _ in 0..1000 {
            let mut data = base.clone();
            match rng.below(4) {
                0 => {
                    let at = rng.below(700) as usize;
                    data[at] ^= 1 << rng.below(8);
                }
                1 => {
                    let cut = rng.below(data.len() as u64) as usize;
                    data.truncate(cut);
                }
                2 => {
                    let at = rng.below(700) as usize;
                    let n = rng.below(40) as usize;
                    let end = (at + n).min(data.len());
                    data[at..end].fill(0);
                }
                _ => {
                    for _ in 0..1 + rng.below(8) {
                        let at = rng.below(data.len() as u64) as usize;
                        data[at] = rng.next_u64() as u8;
                    }
                }
            }
            tally(open_segment(&data));
        }
    }
    // Both outcomes are exercised.
    assert!(
        ok > 100 && corrupted > 100,
        "ok {ok}, corrupted {corrupted}"
    );
}
