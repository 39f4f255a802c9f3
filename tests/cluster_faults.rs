//! Three real members under faults: histories of concurrent clients, recorded while
//! members are killed, restarted, paused and cut off, must be linearizable; an old
//! leader that was cut off must not serve a stale read or commit a write on its own.
//!
//! Peer traffic goes through a [`FaultProxy`] per member: each member listens on its own
//! peer port and advertises its proxy's address, so every connection *into* member i
//! passes proxy i.
//!
//! A longer soak, by hand: `MNEMO_SOAK_SECS=300 MNEMO_SOAK_SEED=7 cargo test --release
//! --test cluster_faults soak -- --nocapture` (docs/testing.md).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::linearizability;
use common::proxy::{Direction, FaultProxy};
use common::workload::{SplitMix64, Until, Workload};
use common::{MemberAddrs, MnemoProcess};
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};

const FAST: &[&str] = &["--heartbeat-interval=50", "--election-timeout=500"];
const ELECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// Three members whose peer traffic passes fault proxies.
struct ProxiedCluster {
    members: Vec<MnemoProcess>,
    proxies: Vec<FaultProxy>,
}

impl ProxiedCluster {
    fn start() -> ProxiedCluster {
        let addrs: Vec<MemberAddrs> = (1..=3)
            .map(|i| MemberAddrs::new(&format!("m{i}")))
            .collect();
        let proxies: Vec<FaultProxy> = addrs
            .iter()
            .map(|a| FaultProxy::start(format!("127.0.0.1:{}", a.peer_port).parse().unwrap()))
            .collect();
        let initial = addrs
            .iter()
            .zip(&proxies)
            .map(|(a, p)| format!("{}={}", a.name, p.url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("--initial-cluster-token=faults-{}", common::free_port());
        let mut members: Vec<MnemoProcess> = addrs
            .into_iter()
            .zip(&proxies)
            .map(|(a, p)| {
                let advertise = format!("--initial-advertise-peer-urls={}", p.url());
                let mut args: Vec<&str> = FAST.to_vec();
                args.push(&token);
                args.push(&advertise);
                MnemoProcess::spawn_member(a, initial.clone(), &args, &[])
            })
            .collect();
        for m in &mut members {
            m.wait_ready();
        }
        ProxiedCluster { members, proxies }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(MnemoProcess::client_url).collect()
    }

    /// The member the running members agree leads.
    async fn leader(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut views = Vec::new();
            for &i in among {
                let s = async {
                    let mut c = self.members[i].maintenance().await;
                    c.status(StatusRequest {})
                        .await
                        .ok()
                        .map(|r| r.into_inner())
                };
                if let Ok(Some(s)) = tokio::time::timeout(Duration::from_secs(1), s).await {
                    views.push((i, s.header.unwrap().member_id, s.leader));
                }
            }
            if views.len() == among.len()
                && views[0].2 != 0
                && views.iter().all(|v| v.2 == views[0].2)
            {
                if let Some(v) = views.iter().find(|v| v.1 == views[0].2) {
                    return v.0;
                }
            }
            if Instant::now() >= deadline {
                for &i in among {
                    let err = self.members[i].stderr();
                    let tail: Vec<&str> = err.lines().rev().take(25).collect();
                    eprintln!("--- m{} stderr, newest first:\n{}", i + 1, tail.join("\n"));
                    // A member that answers nothing: its threads' stacks, where gdb exists.
                    if !views.iter().any(|v| v.0 == i) {
                        if let Some(pid) = self.members[i].pid() {
                            let bt = Command::new("gdb")
                                .args([
                                    "-p",
                                    &pid.to_string(),
                                    "-batch",
                                    "-ex",
                                    "thread apply all bt",
                                ])
                                .output();
                            if let Ok(out) = bt {
                                eprintln!(
                                    "--- m{} threads:\n{}",
                                    i + 1,
                                    String::from_utf8_lossy(&out.stdout)
                                );
                            }
                        }
                    }
                }
                panic!("no agreed leader among {among:?}: {views:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn signal(m: &MnemoProcess, sig: &str) {
    let pid = m.pid().expect("the member runs");
    let ok = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -s {sig} {pid}");
}

/// Runs a recorded workload against the cluster while `nemesis` injects faults, then
/// checks the history.
async fn check_under_faults(seed: u64, duration: Duration) {
    let mut c = ProxiedCluster::start();
    let mut workload = Workload::new(c.endpoints(), 6, Until::Elapsed(duration), 3, seed);
    workload.request_timeout = Duration::from_secs(2);
    let recording = tokio::spawn(workload.record());

    let mut rng = SplitMix64::new(seed);
    let start = Instant::now();
    let mut faults = Vec::new();
    while start.elapsed() + Duration::from_secs(2) < duration {
        let all = [0, 1, 2];
        let leader = c.leader(&all).await;
        let victim = if rng.below(2) == 0 {
            leader
        } else {
            (leader + 1 + rng.below(2) as usize) % 3
        };
        let hold = ELECTION_TIMEOUT * (1 + rng.below(3) as u32);
        match rng.below(4) {
            0 => {
                faults.push(format!("kill -9 m{} then restart", victim + 1));
                c.members[victim].kill();
                tokio::time::sleep(hold).await;
                c.members[victim].restart();
            }
            1 => {
                faults.push(format!("pause m{} for {hold:?}", victim + 1));
                signal(&c.members[victim], "STOP");
                tokio::time::sleep(hold).await;
                signal(&c.members[victim], "CONT");
            }
            2 => {
                faults.push(format!(
                    "blackhole peer traffic into m{} for {hold:?}",
                    victim + 1
                ));
                c.proxies[victim].blackhole(Direction::Both);
                tokio::time::sleep(hold).await;
                c.proxies[victim].heal();
            }
            _ => {
                faults.push(format!(
                    "delay peer traffic into m{} by 100 ms for {hold:?}",
                    victim + 1
                ));
                c.proxies[victim].delay(Direction::Both, Duration::from_millis(100));
                tokio::time::sleep(hold).await;
                c.proxies[victim].heal();
            }
        }
        eprintln!("nemesis: {}", faults.last().map_or("", String::as_str));
        tokio::time::sleep(ELECTION_TIMEOUT).await;
    }
    let history = recording.await.unwrap();
    println!(
        "seed {seed}: faults {faults:?}; history: {}",
        history.summary()
    );
    assert!(!faults.is_empty(), "the nemesis injected no fault");
    assert!(
        history.reads_of_values() > 0,
        "a history whose reads saw nothing proves little: {}",
        history.summary()
    );
    let verdict = linearizability::check(&history);
    assert!(
        verdict.is_linearizable(),
        "seed {seed}, faults {faults:?}: {verdict}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_stay_linearizable_while_members_die_pause_and_lose_peers() {
    check_under_faults(0x5eed_0001, Duration::from_secs(12)).await;
}

/// The long run, by hand (MNEMO_SOAK_SECS, MNEMO_SOAK_SEED); a few seconds otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    let secs = std::env::var("MNEMO_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let seed = std::env::var("MNEMO_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x50a4);
    check_under_faults(seed, Duration::from_secs(secs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_old_leader_serves_no_stale_read_and_commits_nothing_alone() {
    let c = ProxiedCluster::start();
    let l = c.leader(&[0, 1, 2]).await;
    let mut old = c.members[l].kv().await;
    old.put(PutRequest {
        key: b"k".to_vec(),
        value: b"old".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();

    // Nothing reaches the old leader, and it hears no answer from anyone: it cannot
    // renew its leadership. (Its own requests go out through the others' proxies; their
    // answers come back on those connections, so hold the old leader still too.)
    c.proxies[l].blackhole(Direction::Both);
    signal(&c.members[l], "STOP");
    let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let new = c.leader(&others).await;
    assert_ne!(new, l);
    let mut kv = c.members[new].kv().await;
    let rev = kv
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"new".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;

    // The old leader wakes up still believing it leads, with nobody able to reach it.
    signal(&c.members[l], "CONT");
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        old.range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        }),
    )
    .await
    .expect("a linearizable read on a cut-off member must fail in bounded time");
    match read {
        Ok(r) => {
            let r = r.into_inner();
            assert_eq!(r.kvs[0].value, b"new", "a stale linearizable read");
        }
        // "no leader", "request timed out" or "not leader": any refusal, never old data.
        Err(e) => assert!(
            matches!(
                e.code(),
                tonic::Code::Unavailable | tonic::Code::FailedPrecondition
            ),
            "{e:?}"
        ),
    }
    // A write through it is either refused or done by the real leader (a follower
    // forwards writes): never committed by the old leader on its own.
    let write = tokio::time::timeout(
        Duration::from_secs(20),
        old.put(PutRequest {
            key: b"split".to_vec(),
            value: b"brain".to_vec(),
            ..Default::default()
        }),
    )
    .await
    .expect("a write on a cut-off member must end in bounded time");
    let mut kv = c.members[new].kv().await;
    let r = kv
        .range(RangeRequest {
            key: b"split".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    if write.is_ok() {
        assert_eq!(
            r.kvs.len(),
            1,
            "an acknowledged write is missing on the majority"
        );
    }
    assert!(r.header.unwrap().revision >= rev);
    let r = kv
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kvs[0].value, b"new");

    // Healed, it rejoins as a follower and sees the new value.
    c.proxies[l].heal();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = old
            .range(RangeRequest {
                key: b"k".to_vec(),
                serializable: true,
                ..Default::default()
            })
            .await;
        if let Ok(r) = r {
            if r.into_inner().kvs.first().map(|kv| kv.value.clone()) == Some(b"new".to_vec()) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the old leader did not catch up after healing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
