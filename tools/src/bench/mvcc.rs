//! `mvcc put`: the storage layer alone, in this process: puts applied to a fresh MVCC
//! store (page file) in batches, each batch committed as the server's apply loop does
//! (deferred; one durable commit at the end). A request is one batch.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use mnemo::command::{Command, CommandResponse, Op};
use mnemo::mvcc::Store;
use mnemo_proto::etcdserverpb::PutRequest;
use mnemo_storage::Durability;

use super::load::{histogram, key, record, Rng};
use super::summary::Summary;
use super::{BenchError, Global, Result};

#[derive(Debug, Clone, Subcommand)]
pub enum MvccCommand {
    /// Puts into a fresh store.
    Put(MvccPutArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MvccPutArgs {
    /// Total puts.
    #[arg(long, default_value_t = 100_000)]
    pub total: u64,
    /// Puts per committed batch.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1_000_000)]
    pub key_space_size: u64,
    /// Directory for the page file (default: a new one under the system temp dir,
    /// removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub async fn run(_g: &Global, cmd: &MvccCommand) -> Result<Summary> {
    let MvccCommand::Put(a) = cmd;
    let a = a.clone();
    tokio::task::spawn_blocking(move || put(&a))
        .await
        .map_err(|e| BenchError(format!("mvcc task failed: {e}")))?
}

fn put(a: &MvccPutArgs) -> Result<Summary> {
    let (dir, remove) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("mnemo-bench-mvcc-{}", std::process::id())),
            true,
        ),
    };
    let err = |e: mnemo::error::Error| BenchError(format!("mvcc: {e}"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError(format!("creating {}: {e}", dir.display())))?;
    let store = Store::open(&dir.join("db")).map_err(err)?;
    let value = vec![b'v'; a.val_size];
    let mut h = histogram();
    let mut errors = Vec::new();
    let start = Instant::now();
    let batch = a.batch.max(1);
    let mut n = 0;
    while n < a.total {
        let t = Instant::now();
        let mut ap = store.begin_apply().map_err(err)?;
        let end = (n + batch).min(a.total);
        for i in n..end {
            let k = key(Rng::new(i).below(a.key_space_size.max(1)), a.key_size);
            let r = ap.apply(&Command::new(Op::Put(PutRequest {
                key: k,
                value: value.clone(),
                ..Default::default()
            })));
            if !matches!(r, CommandResponse::Put(_)) {
                errors.push(format!("{r:?}"));
            }
        }
        ap.commit(Durability::Deferred).map_err(err)?;
        record(&mut h, t.elapsed());
        n = end;
    }
    store.sync().map_err(err)?;
    let elapsed = start.elapsed();
    drop(store);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let name = format!(
        "mvcc put ({batch} puts per batch, {:.0} puts/s)",
        a.total as f64 / elapsed.as_secs_f64()
    );
    Ok(Summary::new(&name, &h, elapsed, errors))
}
