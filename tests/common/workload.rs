//! A workload that records a [`History`]: concurrent clients issuing random puts,
//! linearizable gets, deletes and compare-and-set txns over a few keys through the gRPC
//! KV service.
//!
//! ```ignore
//! let history = record_history(cluster_urls, 4, Until::Elapsed(secs(5)), 3, seed).await;
//! let verdict = linearizability::check(&history);
//! assert!(verdict.is_linearizable(), "{verdict}");
//! ```
//!
//! Each client starts on endpoint `client % endpoints.len()` and moves to the next one
//! (round-robin) after any error. Every written value is unique in the history
//! (`c{client}-{n}`), so a read tells which write it saw. A write that fails or times
//! out is recorded `Unknown`; a read that fails is left out (it had no effect). The
//! checker assumes the keys start absent, so use a fresh store or a fresh `key_prefix`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::request_op::Request;
use mnemo_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::{Channel, Endpoint};

use super::history::{History, HistoryClock, Op, OpResult, Operation, Outcome};

/// When the clients stop.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Each client stops issuing operations once this much time has passed since the
    /// start (an operation in flight still completes or times out).
    Elapsed(Duration),
    /// Each client issues this many operations.
    OpsPerClient(usize),
}

/// A workload's settings; [`Workload::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Client URLs, `http://host:port`.
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub until: Until,
    /// How many keys the clients share (few keys, more contention).
    pub keys: usize,
    pub seed: u64,
    /// Keys are `{key_prefix}k{i}`, or `{key_prefix}g{generation}/k{i}` with rotation.
    pub key_prefix: String,
    /// Move all clients to fresh keys every this often (Jepsen's "independent" keys):
    /// the checker's cost grows fast with the length of one key's history, above all
    /// with writes left `Unknown`, which stay pending to its end.
    pub key_rotation: Option<Duration>,
    /// Per request; a write that takes longer is `Unknown`.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// A client gives up after this many connection failures in a row (about 50 ms
    /// apart), so that a workload on a dead cluster ends.
    pub max_connect_failures: usize,
}

impl Workload {
    pub fn new(
        endpoints: Vec<String>,
        clients: usize,
        until: Until,
        keys: usize,
        seed: u64,
    ) -> Workload {
        Workload {
            endpoints,
            clients,
            until,
            keys,
            seed,
            key_prefix: "lincheck/".to_string(),
            key_rotation: Some(Duration::from_secs(1)),
            request_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            max_connect_failures: 200,
        }
    }

    /// Runs the clients as tasks of the current tokio runtime and returns what they saw.
    pub async fn record(self) -> History {
        assert!(!self.endpoints.is_empty(), "a workload needs an endpoint");
        assert!(
            self.clients > 0 && self.keys > 0,
            "a workload needs clients and keys"
        );
        let clock = HistoryClock::start();
        let tasks: Vec<_> = (0..self.clients)
            .map(|client| {
                let workload = self.clone();
                tokio::spawn(async move { workload.run_client(client, clock).await })
            })
            .collect();
        let mut history = History::new();
        for task in tasks {
            history
                .ops
                .extend(task.await.expect("a workload client panicked"));
        }
        history.ops.sort_by_key(|o| (o.invoke, o.client));
        history
    }

    async fn run_client(&self, client: usize, clock: HistoryClock) -> Vec<Operation> {
        let mut rng = SplitMix64::new(self.seed ^ (client as u64 + 1).wrapping_mul(GOLDEN));
        let mut endpoint = client % self.endpoints.len();
        let mut kv: Option<KvClient<Channel>> = None;
        let mut connect_failures = 0;
        // The value this client last knew for each key, for compare-and-set to succeed
        // now and then.
        let mut known: HashMap<String, Option<String>> = HashMap::new();
        let mut ops = Vec::new();
        let mut issued = 0;
        loop {
            let done = match self.until {
                Until::Elapsed(d) => clock.now() >= u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
                Until::OpsPerClient(n) => issued >= n,
            };
            if done {
                break;
            }
            let Some(mut client_kv) = kv.clone() else {
                match self.connect(&self.endpoints[endpoint]).await {
                    Some(c) => {
                        kv = Some(c);
                        connect_failures = 0;
                    }
                    None => {
                        connect_failures += 1;
                        if connect_failures >= self.max_connect_failures {
                            break;
                        }
                        endpoint = (endpoint + 1) % self.endpoints.len();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            };
            let op = self.choose(&mut rng, client, issued, clock.now(), &known);
            issued += 1;
            let invoke = clock.now();
            let answer = tokio::time::timeout(self.request_timeout, perform(&mut client_kv, &op));
            let answer = answer.await;
            let complete = clock.now();
            let outcome = match answer {
                Ok(Ok(result)) => {
                    learn(&mut known, &op, &result);
                    Outcome::Ok(result)
                }
                Ok(Err(_)) | Err(_) => {
                    kv = None;
                    endpoint = (endpoint + 1) % self.endpoints.len();
                    known.remove(op.key());
                    if !op.is_write() {
                        continue;
                    }
                    Outcome::Unknown
                }
            };
            ops.push(Operation {
                client,
                op,
                invoke,
                complete,
                outcome,
            });
        }
        ops
    }

    async fn connect(&self, url: &str) -> Option<KvClient<Channel>> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .ok()?
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout);
        let channel = tokio::time::timeout(self.connect_timeout * 2, endpoint.connect())
            .await
            .ok()?
            .ok()?;
        Some(KvClient::new(channel))
    }

    /// 40% gets, 25% puts, 20% compare-and-set, 15% deletes.
    fn choose(
        &self,
        rng: &mut SplitMix64,
        client: usize,
        n: usize,
        now: u64,
        known: &HashMap<String, Option<String>>,
    ) -> Op {
        let i = rng.below(self.keys as u64);
        let key = match self.key_rotation {
            Some(every) => {
                let every = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX).max(1);
                format!("{}g{}/k{i}", self.key_prefix, now / every)
            }
            None => format!("{}k{i}", self.key_prefix),
        };
        let value = format!("c{client}-{n}");
        match rng.below(100) {
            0..40 => Op::Get { key },
            40..65 => Op::Put { key, value },
            65..85 => {
                // Mostly the value last seen, so that some succeed.
                let expected = match known.get(&key) {
                    Some(v) if rng.below(4) != 0 => v.clone(),
                    _ => None,
                };
                Op::Cas {
                    key,
                    expected,
                    new: value,
                }
            }
            _ => Op::Delete { key },
        }
    }
}

/// [`Workload::record`] with the default settings.
pub async fn record_history(
    endpoints: Vec<String>,
    clients: usize,
    until: Until,
    keys: usize,
    seed: u64,
) -> History {
    Workload::new(endpoints, clients, until, keys, seed)
        .record()
        .await
}

/// Sends `op` as etcd's KV requests.
async fn perform(kv: &mut KvClient<Channel>, op: &Op) -> Result<OpResult, tonic::Status> {
    match op {
        Op::Put { key, value } => {
            kv.put(PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                ..Default::default()
            })
            .await?;
            Ok(OpResult::Put)
        }
        Op::Get { key } => {
            let r = kv
                .range(RangeRequest {
                    key: key.clone().into_bytes(),
                    serializable: false,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let value = r
                .kvs
                .first()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
            Ok(OpResult::Get(value))
        }
        Op::Delete { key } => {
            let r = kv
                .delete_range(DeleteRangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(OpResult::Delete(r.deleted))
        }
        Op::Cas { key, expected, new } => {
            let compare = match expected {
                Some(v) => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    key: key.clone().into_bytes(),
                    range_end: Vec::new(),
                    target_union: Some(TargetUnion::Value(v.clone().into_bytes())),
                },
                None => Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: key.clone().into_bytes(),
                    range_end: Vec::new(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                },
            };
            let put = RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: key.clone().into_bytes(),
                    value: new.clone().into_bytes(),
                    ..Default::default()
                })),
            };
            let r = kv
                .txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![put],
                    failure: Vec::new(),
                })
                .await?
                .into_inner();
            Ok(OpResult::Cas(r.succeeded))
        }
    }
}

/// What a client knows of a key's value after `op` answered `result`.
fn learn(known: &mut HashMap<String, Option<String>>, op: &Op, result: &OpResult) {
    let key = op.key().to_string();
    match (op, result) {
        (_, OpResult::Get(v)) => {
            known.insert(key, v.clone());
        }
        (Op::Put { value, .. }, _) => {
            known.insert(key, Some(value.clone()));
        }
        (Op::Cas { new, .. }, OpResult::Cas(true)) => {
            known.insert(key, Some(new.clone()));
        }
        (_, OpResult::Delete(_)) => {
            known.insert(key, None);
        }
        _ => {
            known.remove(&key);
        }
    }
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64: a tiny seeded generator, so that a seed reproduces a workload's choices.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for test workloads (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
