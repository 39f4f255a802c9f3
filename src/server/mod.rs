//! The server: the one place where client requests become raft proposals or local reads.
//!
//! gRPC services (src/grpc/) are thin: they hand requests to [`EtcdServer`], which checks
//! them (etcd's validation rules, size limits, the space quota), proposes writes through
//! raft, serves reads (linearizable through the raft read index, or serializable from
//! the local store), and fills every response header.

mod auth;
mod compactor;
mod concurrency;
mod election;
pub mod identity;
mod lock;
mod membership;
pub use membership::LeaseCall;
mod metrics;
mod run;
pub mod validate;

pub use auth::{Access, Credentials};
pub use concurrency::prefix_end;
pub use metrics::ServerCounters;
pub use run::{client_listeners, run, serve, shutdown_signal, ClientListener, DirLock};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, HashKvResponse,
    HashResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveResponse, Member as PbMember, PutRequest, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, SnapshotResponse, StatusResponse, TxnRequest, TxnResponse,
};
use prost::Message;

use crate::auth::tokens::TokenStore;
use crate::command::{Command, CommandResponse, Op};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::Store;
use crate::raft::{Member, RaftNode};

/// The etcd API version mnemo speaks, reported by Status and `--version`.
pub const ETCD_VERSION: &str = "3.4.0";

/// The cluster version mnemo reports (`/version`'s `etcdcluster`): etcd's major.minor.0.
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";

/// Directory under the member dir holding snapshot copies while they stream to clients;
/// emptied at start (a crash can leave one behind).
pub const SNAPSHOTS_OUT: &str = "snapshots-out";

/// Longest lease TTL etcd accepts, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// What the server needs from the configuration.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub member_id: u64,
    pub cluster_id: u64,
    /// `--initial-cluster-token`: salts the ids of members added later.
    pub cluster_token: String,
    /// Where to serve the peer service (`--listen-peer-urls`).
    pub peer_addrs: Vec<std::net::SocketAddr>,
    pub member: Member,
    pub member_dir: PathBuf,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub quota_backend_bytes: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_count: u64,
    /// Entries kept in the log after a snapshot for slow followers.
    pub snapshot_catchup_entries: u64,
    /// Every member of a new cluster (`--initial-cluster`), by id.
    pub initial_members: std::collections::BTreeMap<u64, Member>,
    /// `--initial-cluster-state new`.
    pub new_cluster: bool,
    pub auto_compaction: Option<crate::config::AutoCompaction>,
    pub watch_progress_notify_interval: Duration,
    /// Write the WAL with pwrite + fdatasync even where io_uring works.
    pub wal_force_pwrite: bool,
    /// Bytes of page-file pages cached in memory.
    pub backend_cache_bytes: usize,
    /// `--bcrypt-cost`: the cost of password hashes.
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl`: how long an unused simple token stays valid.
    pub auth_token_ttl: Duration,
    /// `--client-cert-auth`: a request without a token is the user its client
    /// certificate's Common Name names.
    pub client_cert_auth: bool,
    /// TLS on the peer URLs.
    pub peer_tls: crate::tls::PeerTls,
}

/// A running member.
#[derive(Debug)]
pub struct EtcdServer {
    pub options: ServerOptions,
    pub store: Arc<Store>,
    pub raft: RaftNode,
    pub hub: Arc<WatchHub>,
    pub lessor: Arc<Lessor>,
    pub counters: ServerCounters,
    /// Simple tokens handed out by Authenticate.
    pub tokens: TokenStore,
    lease_ids: LeaseIdGenerator,
    /// Woken when this member sees itself removed from the cluster: it stops.
    pub removed: tokio::sync::Notify,
    /// `grpc_server_handled_total`'s counters.
    pub grpc_stats: Arc<crate::grpc::stats::GrpcStats>,
    /// Held by the leader while it makes a membership change.
    membership_changes: tokio::sync::Mutex<()>,
}

impl EtcdServer {
    pub fn new(
        options: ServerOptions,
        store: Arc<Store>,
        raft: RaftNode,
        hub: Arc<WatchHub>,
        lessor: Arc<Lessor>,
    ) -> Self {
        let lease_ids = LeaseIdGenerator::new(options.member_id);
        let tokens = TokenStore::new(options.auth_token_ttl);
        Self {
            options,
            store,
            raft,
            hub,
            lessor,
            counters: ServerCounters::default(),
            tokens,
            lease_ids,
            removed: tokio::sync::Notify::new(),
            membership_changes: tokio::sync::Mutex::new(()),
            grpc_stats: Arc::default(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.raft.raft().metrics().borrow().current_leader == Some(self.options.member_id)
    }

    /// A response header at `revision` (the current one when 0).
    pub fn header(&self, revision: i64) -> ResponseHeader {
        let revision = if revision == 0 {
            self.store.current_revision()
        } else {
            revision
        };
        ResponseHeader {
            cluster_id: self.options.cluster_id,
            member_id: self.options.member_id,
            revision,
            // Every response carries the term: read it alone, not the whole status.
            raft_term: self.raft.raft().metrics().borrow().current_term,
        }
    }

    fn fill(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = Some(self.header(revision));
    }

    /// Proposes `op` and returns its result; a deterministic rejection becomes an error.
    async fn propose(&self, op: Op) -> Result<CommandResponse> {
        self.propose_guarded(op, 0).await
    }

    /// [`EtcdServer::propose`] of a request checked at auth revision `auth_revision`.
    async fn propose_guarded(&self, op: Op, auth_revision: u64) -> Result<CommandResponse> {
        let cmd = Command::guarded(op, auth_revision);
        if cmd.encoded_len() > self.options.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        match self.raft.propose(cmd).await? {
            CommandResponse::Error(e) => Err(e),
            resp => Ok(resp),
        }
    }

    /// etcd's space quota: with the NOSPACE alarm raised, or when this request would
    /// take the file past the quota (which raises the alarm), writes that add data fail.
    async fn check_quota(&self, cost: usize) -> Result<()> {
        if self.nospace_alarm_active() {
            return Err(Error::NoSpace);
        }
        let quota = self.options.quota_backend_bytes;
        if self.store.db_size() + cost as u64 <= quota {
            return Ok(());
        }
        tracing::warn!(
            quota,
            size = self.store.db_size(),
            "space quota exceeded; raising the NOSPACE alarm"
        );
        let alarm = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.options.member_id,
            alarm: AlarmType::Nospace as i32,
        };
        self.propose(Op::Alarm(alarm)).await?;
        Err(Error::NoSpace)
    }

    fn nospace_alarm_active(&self) -> bool {
        self.store
            .alarms()
            .iter()
            .any(|a| a.alarm == AlarmType::Nospace as i32)
    }

    pub async fn range(&self, access: &Access, req: RangeRequest) -> Result<RangeResponse> {
        validate::check_range(&req)?;
        access.check_range(&req)?;
        if !req.serializable {
            self.raft.read_index().await?;
        }
        let store = self.store.clone();
        let mut resp = blocking(move || store.range(&req)).await?;
        self.recheck_read(access)?;
        self.fill(&mut resp.header);
        Ok(resp)
    }

    pub async fn put(&self, access: &Access, req: PutRequest) -> Result<PutResponse> {
        validate::check_put(&req)?;
        self.check_put(access, &req)?;
        self.check_quota(req.encoded_len()).await?;
        match self.propose_guarded(Op::Put(req), access.guard()).await? {
            CommandResponse::Put(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected("put", &other)),
        }
    }

    pub async fn delete_range(
        &self,
        access: &Access,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        validate::check_delete(&req)?;
        self.check_delete(access, &req)?;
        match self
            .propose_guarded(Op::DeleteRange(req), access.guard())
            .await?
        {
            CommandResponse::DeleteRange(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected("delete", &other)),
        }
    }

    pub async fn txn(&self, access: &Access, req: TxnRequest) -> Result<TxnResponse> {
        validate::check_txn(&req, self.options.max_txn_ops)?;
        self.check_txn(access, &req)?;
        if txn_writes(&req) {
            self.check_quota(req.encoded_len()).await?;
        } else {
            // etcd serves a read-only txn locally: after the read index unless every
            // range in it is serializable.
            if !txn_is_serializable(&req) {
                self.raft.read_index().await?;
            }
            let store = self.store.clone();
            let mut resp = blocking(move || store.read_txn(&req)).await?;
            self.recheck_read(access)?;
            self.fill(&mut resp.header);
            return Ok(resp);
        }
        match self.propose_guarded(Op::Txn(req), access.guard()).await? {
            CommandResponse::Txn(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected("txn", &other)),
        }
    }

    /// Compaction drops history from the key index at once; the records leave the page
    /// file in the background, and before the answer when `physical` is asked for (as
    /// etcd waits for its physical compaction).
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse> {
        let physical = req.physical;
        match self.propose(Op::Compaction(req)).await? {
            CommandResponse::Compaction(mut resp) => {
                let store = self.store.clone();
                let removal = tokio::task::spawn_blocking(move || store.remove_compacted());
                if physical {
                    removal
                        .await
                        .map_err(|e| Error::Internal(format!("compaction task failed: {e}")))??;
                }
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected("compaction", &other)),
        }
    }

    pub async fn lease_grant(&self, mut req: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        self.check_quota(req.encoded_len()).await?;
        req.ttl = req.ttl.max(self.lessor.min_ttl());
        while req.id == 0 {
            req.id = self.lease_ids.next();
        }
        match self.propose(Op::LeaseGrant(req)).await? {
            CommandResponse::LeaseGrant(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected("lease grant", &other)),
        }
    }

    /// Revoking a lease deletes its keys: the caller needs write permission on each.
    pub async fn lease_revoke(
        &self,
        access: &Access,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse> {
        self.check_lease_keys(access, req.id)?;
        match self
            .propose_guarded(Op::LeaseRevoke(req), access.guard())
            .await?
        {
            CommandResponse::LeaseRevoke(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected("lease revoke", &other)),
        }
    }

    /// etcd answers an unknown lease with TTL -1 rather than an error.
    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        let header = Some(self.header(0));
        let Some(info) = self.store.lease(id) else {
            return Ok(LeaseTimeToLiveResponse {
                header,
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            });
        };
        let (ttl, granted_ttl) = self
            .lease_remaining(id)
            .await?
            .unwrap_or((info.ttl, info.ttl));
        let keys = if keys {
            self.store.lease_keys(id)
        } else {
            vec![]
        };
        Ok(LeaseTimeToLiveResponse {
            header,
            id,
            ttl,
            granted_ttl,
            keys,
        })
    }

    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse> {
        if req.action == AlarmAction::Get as i32 {
            let alarms: Vec<AlarmMember> = self
                .store
                .alarms()
                .into_iter()
                .filter(|a| req.alarm == AlarmType::None as i32 || a.alarm == req.alarm)
                .collect();
            return Ok(AlarmResponse {
                header: Some(self.header(0)),
                alarms,
            });
        }
        match self.propose(Op::Alarm(req)).await? {
            CommandResponse::Alarm(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected("alarm", &other)),
        }
    }
}

impl EtcdServer {
    pub fn status(&self) -> StatusResponse {
        let raft = self.raft.status();
        let errors = self
            .store
            .alarms()
            .iter()
            .map(|a| {
                let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
                format!("memberID:{} alarm:{} ", a.member_id, name)
            })
            .collect();
        StatusResponse {
            header: Some(self.header(0)),
            version: ETCD_VERSION.to_string(),
            db_size: self.store.db_size() as i64,
            leader: raft.leader.unwrap_or(0),
            raft_index: raft.commit_index.unwrap_or(0),
            raft_term: raft.term,
            raft_applied_index: raft.applied_index.unwrap_or(0),
            errors,
            db_size_in_use: self.store.db_size_in_use() as i64,
            is_learner: raft.is_learner,
            ..Default::default()
        }
    }

    pub fn members(&self) -> Vec<PbMember> {
        self.raft
            .status()
            .members
            .into_iter()
            .map(|m| PbMember {
                id: m.id,
                name: m.member.name,
                peer_ur_ls: m.member.peer_urls,
                client_ur_ls: m.member.client_urls,
                is_learner: m.is_learner,
            })
            .collect()
    }

    /// Online defragmentation: the page file is compacted in small steps between applies.
    pub async fn defragment(&self) -> Result<()> {
        let store = self.store.clone();
        let before = store.db_size();
        blocking(move || store.defrag()).await?;
        tracing::info!(before, after = self.store.db_size(), "defragmented");
        Ok(())
    }

    pub async fn hash(&self) -> Result<HashResponse> {
        let store = self.store.clone();
        let hash = blocking(move || store.hash()).await?;
        Ok(HashResponse {
            header: Some(self.header(0)),
            hash,
        })
    }

    pub async fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let store = self.store.clone();
        let (hash, compact_revision, hash_revision) =
            blocking(move || store.hash_kv(revision)).await?;
        Ok(HashKvResponse {
            header: Some(self.header(hash_revision)),
            hash,
            compact_revision,
            hash_revision,
        })
    }

    /// Streams a consistent copy of the page file, followed (as etcd does) by one last
    /// message holding the SHA-256 of everything sent.
    pub async fn snapshot(
        &self,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<SnapshotResponse, tonic::Status>>> {
        const CHUNK: usize = 32 * 1024;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = self.options.member_dir.join(SNAPSHOTS_OUT);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(format!("snapshot-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let store = self.store.clone();
        let p = path.clone();
        let size = blocking(move || store.snapshot_to(&p)).await?;
        let header = self.header(0);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use sha2::Digest;
            use tokio::io::AsyncReadExt;
            let result: Result<(), tonic::Status> = async {
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| tonic::Status::unavailable(format!("snapshot: {e}")))?;
                let mut sha = sha2::Sha256::new();
                let mut sent = 0u64;
                let mut first = true;
                while sent < size {
                    let mut buf = vec![0u8; CHUNK.min((size - sent) as usize)];
                    file.read_exact(&mut buf)
                        .await
                        .map_err(|e| tonic::Status::unavailable(format!("snapshot: {e}")))?;
                    sha.update(&buf);
                    sent += buf.len() as u64;
                    let msg = SnapshotResponse {
                        header: first.then_some(header),
                        remaining_bytes: size - sent,
                        blob: buf,
                        ..Default::default()
                    };
                    first = false;
                    if tx.send(Ok(msg)).await.is_err() {
                        return Ok(());
                    }
                }
                let msg = SnapshotResponse {
                    header: first.then_some(header),
                    remaining_bytes: 0,
                    blob: sha.finalize().to_vec(),
                    ..Default::default()
                };
                let _ = tx.send(Ok(msg)).await;
                Ok(())
            }
            .await;
            if let Err(status) = result {
                let _ = tx.send(Err(status)).await;
            }
            let _ = tokio::fs::remove_file(&path).await;
        });
        Ok(rx)
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
}

fn unexpected(what: &str, got: &CommandResponse) -> Error {
    Error::Internal(format!("{what} produced an unexpected result: {got:?}"))
}

/// Whether a txn may write (either branch, nested txns included).
fn txn_writes(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_))
            | Some(request_op::Request::RequestDeleteRange(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_writes(t),
            _ => false,
        })
}

/// Whether every range in a txn is serializable (etcd's `isTxnSerializable`).
fn txn_is_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => r.serializable,
            Some(request_op::Request::RequestTxn(t)) => txn_is_serializable(t),
            None => true,
            _ => false,
        })
}

/// Server-chosen lease ids, as etcd makes them: the member id's low 16 bits, then a
/// 40-bit millisecond timestamp taken at start, then an 8-bit counter — unique across
/// members and restarts; the top bit is cleared so the id is a positive int64.
#[derive(Debug)]
struct LeaseIdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

impl LeaseIdGenerator {
    fn new(member_id: u64) -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        Self {
            prefix: member_id << 48,
            suffix: AtomicU64::new((millis & ((1 << 40) - 1)) << 8),
        }
    }

    fn next(&self) -> i64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        let id = self.prefix | (suffix & ((1 << 48) - 1));
        (id & (i64::MAX as u64)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_positive_distinct_and_carry_the_member() {
        let g = LeaseIdGenerator::new(0xffff_0000_0000_abcd);
        let a = g.next();
        let b = g.next();
        assert!(a > 0 && b > 0 && a != b);
        assert_eq!((a as u64) >> 48, 0xabcd & 0x7fff);
    }
}
