//! kill -9 at random moments while a client writes: after every restart, each
//! acknowledged write is present, and revisions run without gaps.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::MnemoProcess;
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest};

const ROUNDS: usize = 20;

/// xorshift64*: a reproducible sequence of kill delays from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let seed = std::env::var("MNEMO_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed} (MNEMO_CRASH_SEED={seed} to repeat)");
    let mut rng = Rng(seed);
    let mut m = MnemoProcess::start(&[]);
    // Every acknowledged put: (sequence number, revision).
    let acked: Arc<Mutex<Vec<(u64, i64)>>> = Arc::default();
    let mut next_seq = 0u64;

    for round in 0..ROUNDS {
        let mut kv = m.kv().await;
        let writer = {
            let acked = acked.clone();
            let start = next_seq;
            tokio::spawn(async move {
                let mut seq = start;
                loop {
                    let r = kv
                        .put(PutRequest {
                            key: format!("crash/{seq:08}").into(),
                            value: seq.to_string().into(),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(resp) => {
                            let rev = resp.into_inner().header.unwrap().revision;
                            acked.lock().unwrap().push((seq, rev));
                        }
                        Err(_) => return seq + 1,
                    }
                    seq += 1;
                }
            })
        };
        let delay = 50 + rng.next() % 400;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        m.kill();
        // Sequence numbers of writes that may or may not have landed are never reused.
        next_seq = writer.await.unwrap();
        m.restart();

        let mut kv = m.kv().await;
        let all = kv
            .range(RangeRequest {
                key: b"crash/".to_vec(),
                range_end: b"crash0".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut revs: Vec<i64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
        revs.sort();
        for (i, rev) in revs.iter().enumerate() {
            assert_eq!(
                *rev,
                i as i64 + 2,
                "round {round}: revisions have a gap: {revs:?}"
            );
        }
        assert_eq!(
            all.header.unwrap().revision,
            revs.last().copied().unwrap_or(1)
        );
        let present: std::collections::HashMap<Vec<u8>, i64> = all
            .kvs
            .iter()
            .map(|kv| (kv.key.clone(), kv.mod_revision))
            .collect();
        for &(seq, rev) in acked.lock().unwrap().iter() {
            let key = format!("crash/{seq:08}").into_bytes();
            assert_eq!(
                present.get(&key),
                Some(&rev),
                "round {round}: acknowledged write {seq} at revision {rev} is missing"
            );
        }
        eprintln!(
            "round {round}: killed after {delay} ms, {} writes acknowledged so far",
            acked.lock().unwrap().len()
        );
    }
    assert!(
        acked.lock().unwrap().len() > ROUNDS,
        "the writer made too little progress to test anything"
    );
}
