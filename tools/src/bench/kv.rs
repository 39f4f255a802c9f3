//! KV workloads: `put`, `range`, `txn-put` and `txn-mixed`, with etcd's benchmark flags.

use std::sync::Arc;

use clap::Args;
use mnemo::server::prefix_end;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use super::load::{self, connect, key, Rng};
use super::summary::Summary;
use super::{BenchError, BudgetArgs, Global, Result};

/// Key and value shape of the write workloads.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys written.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Write keys 0, 1, 2, ... in order (wrapping at the key space) instead of at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

impl KeyArgs {
    /// The key of request number `n` (a pure function of `n`, so runs repeat).
    pub fn key_for(&self, n: u64) -> Vec<u8> {
        let space = self.key_space_size.max(1);
        let k = if self.sequential_keys {
            n % space
        } else {
            Rng::new(n).below(space)
        };
        key(k, self.key_size)
    }
}

#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// The key, or the start of the range.
    pub key: String,
    /// The end of the range (exclusive).
    pub range_end: Option<String>,
    /// All keys with `key` as a prefix (instead of `range_end`).
    #[arg(long)]
    pub prefix: bool,
    /// `l` linearizable, `s` serializable.
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    pub consistency: String,
    /// Maximum keys returned per request (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Return keys only.
    #[arg(long)]
    pub keys_only: bool,
    /// Return the count only.
    #[arg(long)]
    pub count_only: bool,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TxnPutArgs {
    /// Puts per txn.
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TxnMixedArgs {
    /// Read/write ratio: reads per write.
    #[arg(long, default_value_t = 1.0)]
    pub rw_ratio: f64,
    /// `l` linearizable, `s` serializable reads.
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    pub consistency: String,
    /// Maximum keys per read (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// One KV client per bench client, over the shared connections.
async fn clients(g: &Global) -> Result<Arc<Vec<KvClient<Channel>>>> {
    let channels = connect(&g.endpoints, g.conns, g.target_leader).await?;
    Ok(Arc::new(
        (0..g.clients.max(1))
            .map(|c| KvClient::new(channels[c % channels.len()].clone()))
            .collect(),
    ))
}

fn status(e: tonic::Status) -> String {
    format!("{:?}: {}", e.code(), e.message())
}

pub async fn put(g: &Global, a: &PutArgs) -> Result<Summary> {
    let kvs = clients(g).await?;
    let keys = a.keys.clone();
    let value = vec![b'v'; a.keys.val_size];
    Ok(load::run("put", &a.budget.budget(g), move |c, n| {
        let mut kv = kvs[c].clone();
        let key = keys.key_for(n);
        let value = value.clone();
        async move {
            kv.put(PutRequest {
                key,
                value,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(status)
        }
    })
    .await)
}

fn range_request(key: &[u8], end: Option<&[u8]>, a: &RangeArgs) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        range_end: match (a.prefix, end) {
            (true, _) => prefix_end(key),
            (false, Some(e)) => e.to_vec(),
            (false, None) => vec![],
        },
        limit: a.limit,
        serializable: a.consistency == "s",
        keys_only: a.keys_only,
        count_only: a.count_only,
        ..Default::default()
    }
}

pub async fn range(g: &Global, a: &RangeArgs) -> Result<Summary> {
    if a.prefix && a.range_end.is_some() {
        return Err(BenchError(
            "give either --prefix or a range end, not both".into(),
        ));
    }
    let kvs = clients(g).await?;
    let req = range_request(
        a.key.as_bytes(),
        a.range_end.as_deref().map(str::as_bytes),
        a,
    );
    Ok(load::run("range", &a.budget.budget(g), move |c, _| {
        let mut kv = kvs[c].clone();
        let req = req.clone();
        async move { kv.range(req).await.map(|_| ()).map_err(status) }
    })
    .await)
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

pub async fn txn_put(g: &Global, a: &TxnPutArgs) -> Result<Summary> {
    if a.txn_ops == 0 {
        return Err(BenchError("--txn-ops must be at least 1".into()));
    }
    let kvs = clients(g).await?;
    let (keys, ops) = (a.keys.clone(), a.txn_ops);
    let value = vec![b'v'; a.keys.val_size];
    Ok(load::run("txn-put", &a.budget.budget(g), move |c, n| {
        let mut kv = kvs[c].clone();
        // Distinct keys within one txn (etcd refuses duplicate keys in a txn).
        let mut chosen: Vec<Vec<u8>> = Vec::with_capacity(ops);
        let mut tries = 0u64;
        while chosen.len() < ops && tries < ops as u64 * 16 {
            let k = keys.key_for(n * ops as u64 + tries);
            if !chosen.contains(&k) {
                chosen.push(k);
            }
            tries += 1;
        }
        let success = chosen
            .into_iter()
            .map(|k| put_op(k, value.clone()))
            .collect();
        async move {
            kv.txn(TxnRequest {
                success,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(status)
        }
    })
    .await)
}

/// Reads and writes in one run: each request is a read with probability
/// `rw_ratio / (rw_ratio + 1)`; returns the (reads, writes) summaries.
pub async fn txn_mixed(g: &Global, a: &TxnMixedArgs) -> Result<(Summary, Summary)> {
    if !(a.rw_ratio.is_finite() && a.rw_ratio >= 0.0) {
        return Err(BenchError(
            "--rw-ratio must be a non-negative number".into(),
        ));
    }
    let kvs = clients(g).await?;
    let budget = a.budget.budget(g);
    let read_share = a.rw_ratio / (a.rw_ratio + 1.0);
    // Which requests read is decided up front from the request number, so both runs
    // below see the same split; each half gets its share of the budget.
    let reads = (budget.total as f64 * read_share).round() as u64;
    let writes = budget.total - reads.min(budget.total);
    let mut read_budget = budget.clone();
    let mut write_budget = budget.clone();
    read_budget.total = reads;
    write_budget.total = writes;
    let share = |b: &mut load::Budget, part: f64| {
        if b.rate > 0.0 {
            b.rate *= part;
        }
    };
    share(&mut read_budget, read_share);
    share(&mut write_budget, 1.0 - read_share);
    // The clients are split between the two halves too.
    let readers =
        ((budget.clients as f64 * read_share).round() as usize).clamp(1, budget.clients.max(2) - 1);
    read_budget.clients = readers;
    write_budget.clients = budget.clients.saturating_sub(readers).max(1);
    let reader = {
        let kvs = kvs.clone();
        let ra = RangeArgs {
            key: String::new(),
            range_end: None,
            prefix: false,
            consistency: a.consistency.clone(),
            limit: a.limit,
            keys_only: false,
            count_only: false,
            budget: a.budget.clone(),
        };
        let keys = a.keys.clone();
        tokio::spawn(async move {
            load::run("txn-mixed reads", &read_budget, move |c, n| {
                let mut kv = kvs[c].clone();
                let k = keys.key_for(n);
                let req = range_request(&k, None, &ra);
                async move {
                    kv.txn(TxnRequest {
                        success: vec![RequestOp {
                            request: Some(request_op::Request::RequestRange(req)),
                        }],
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(status)
                }
            })
            .await
        })
    };
    let keys = a.keys.clone();
    let value = vec![b'v'; a.keys.val_size];
    let w = load::run("txn-mixed writes", &write_budget, move |c, n| {
        let mut kv = kvs[c].clone();
        let k = keys.key_for(n);
        let op = put_op(k, value.clone());
        async move {
            kv.txn(TxnRequest {
                success: vec![op],
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(status)
        }
    })
    .await;
    let r = reader
        .await
        .map_err(|e| BenchError(format!("reader task failed: {e}")))?;
    Ok((r, w))
}
