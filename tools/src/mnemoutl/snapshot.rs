//! `snapshot status FILE` and `snapshot restore FILE`: snapshots saved with
//! `etcdctl snapshot save` against mnemo are page files (the store's consistent copy).
//!
//! `restore` builds a new member's data directory from one, as `etcdutl snapshot
//! restore` does: the page file is checked, copied compactly into `<data-dir>/member/db`
//! without the old cluster's raft metadata (applied index, membership), so the member
//! starts a new cluster from the `--initial-cluster` flags it is started with, keeping
//! the snapshot's revisions, history, leases and alarms.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use mnemo::config::Config;
use mnemo::mvcc::record::{META_TABLE, RAFT_META_PREFIX};
use mnemo::mvcc::Store;
use mnemo::server::prefix_end;
use mnemo_storage::{Database, DatabaseOptions, Durability};
use serde_json::json;

use super::target::{lock_member, PageFile};
use super::{io_error, Report, Result, ToolError};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Hash, revision, total keys (entries of every table, as etcdutl counts) and size.
    Status {
        /// The snapshot file.
        file: PathBuf,
    },
    /// Build a new member's data directory from a snapshot.
    Restore(RestoreArgs),
}

/// etcd's restore flags, with etcd's defaults (the data directory defaults to
/// `<name>.mnemo`, as mnemo's server does).
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Path to the data directory to create.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for restore bootstrap.
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster token for the cluster during restore bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
}

pub fn run(cmd: &SnapshotCommand) -> Result<Report> {
    match cmd {
        SnapshotCommand::Status { file } => status(file),
        SnapshotCommand::Restore(args) => restore(args),
    }
}

fn status(path: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let db = file.database()?;
    let size = db.file_len().map_err(|e| file.context(e))?;
    // As etcdutl counts: every entry of every table.
    let keys: u64 = db
        .begin_read()
        .and_then(|r| r.list_tables())
        .map_err(|e| file.context(e))?
        .iter()
        .map(|(_, n)| n)
        .sum();
    let store = Store::from_database(db).map_err(|e| file.context(e))?;
    let hash = store.hash().map_err(|e| file.context(e))?;
    let revision = store.current_revision();
    // etcdutl's "simple" output: hash, revision, total keys, total size.
    let text = format!("{hash:x}, {revision}, {keys}, {}\n", si_bytes(size));
    Ok(Report::ok(
        text,
        json!({ "hash": hash, "revision": revision, "totalKey": keys, "totalSize": size }),
    ))
}

fn restore(a: &RestoreArgs) -> Result<Report> {
    // The server's own flag validation, so that a restore the member would refuse to
    // start from fails here, before anything is written.
    let mut args = vec![
        "mnemo".to_string(),
        format!("--name={}", a.name),
        format!("--initial-cluster={}", a.initial_cluster),
        format!("--initial-cluster-token={}", a.initial_cluster_token),
        format!(
            "--initial-advertise-peer-urls={}",
            a.initial_advertise_peer_urls
        ),
    ];
    if let Some(d) = &a.data_dir {
        args.push(format!("--data-dir={}", d.display()));
    }
    let config = Config::parse_from(args, std::iter::empty())
        .map_err(|e| ToolError(e.to_string().replace("mnemo: ", "")))?;
    let data_dir = config.data_dir.clone();
    if data_dir.exists() {
        return Err(ToolError(format!(
            "data-dir {:?} exists",
            data_dir.display().to_string()
        )));
    }

    let src = PageFile::open(&a.file)?;
    let src_db = src.database()?;
    let report = src_db.check().map_err(|e| src.context(e))?;
    if !report.is_ok() {
        return Err(src.context(format!(
            "the snapshot is damaged: {}",
            report.problems.join("; ")
        )));
    }

    let member_dir = data_dir.join("member");
    std::fs::create_dir_all(&member_dir).map_err(|e| io_error(member_dir.display(), e))?;
    let _lock = lock_member(&member_dir)?;
    let db_path = member_dir.join("db");
    let restored = (|| -> Result<u64> {
        let opts = DatabaseOptions {
            page_size: src_db.page_size(),
            ..DatabaseOptions::default()
        };
        let out = Database::open_path(&db_path, opts)?;
        let rtx = src_db.begin_read()?;
        let entries = rtx.copy_into(&out, None, 16 * 1024)?;
        let mut w = out.begin_write()?;
        w.open_table(META_TABLE)?
            .remove_range(RAFT_META_PREFIX.to_vec()..prefix_end(RAFT_META_PREFIX))?;
        w.commit(Durability::Durable)?;
        sync_dir(&member_dir)?;
        Ok(entries)
    })();
    let entries = match restored {
        Ok(n) => n,
        Err(e) => {
            // Leave nothing half-made behind.
            let _ = std::fs::remove_dir_all(&data_dir);
            return Err(e);
        }
    };
    let text = format!(
        "restored snapshot {} into {} ({entries} entries) for member {:?} ({:x}) of cluster {:x}\n",
        a.file.display(),
        data_dir.display(),
        config.name,
        config.member_id(),
        config.cluster_id()
    );
    Ok(Report::ok(
        text,
        json!({
            "data_dir": data_dir.display().to_string(),
            "entries": entries,
            "name": config.name,
            "member_id": format!("{:x}", config.member_id()),
            "cluster_id": format!("{:x}", config.cluster_id()),
        }),
    ))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("syncing {}", dir.display()), e))
}

/// Bytes in SI units, as etcdutl prints sizes (`2.1 MB`).
fn si_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let v = n as f64 / 1000f64.powi(e as i32);
    if v < 10.0 && e > 0 {
        format!("{v:.1} {}", UNITS[e])
    } else {
        format!("{v:.0} {}", UNITS[e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_bytes_like_etcdutl() {
        assert_eq!(si_bytes(5), "5 B");
        assert_eq!(si_bytes(2_100_000), "2.1 MB");
        assert_eq!(si_bytes(25_000), "25 kB");
    }
}
