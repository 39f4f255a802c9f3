//! [`RaftNode`]: one member's raft, as the server sees it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mnemo_storage::wal::{IoPath, WalOptions, WalStats};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{Config, ServerState, SnapshotPolicy};

use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{Command, CommandResponse};
use crate::error::{Error, Result};
use crate::mvcc::Store;
use mnemo_proto::mnemopeerpb::{peer_error::Code as PeerCode, PeerError, ProposeRequest};

use super::forward::Waiters;
use super::log_store::{LogStore, Progress, WalHandle};
use super::network::Peers;
use super::state_machine::{ApplyStore, DurabilityPolicy, OnApplied, StateMachine};
use super::{Member, Proposal, Raft};

/// At most this many commands go into one proposal entry…
const MAX_PROPOSAL_COMMANDS: usize = 1024;
/// …and at most about this many bytes (etcd's request limit is 1.5 MiB; the WAL's record
/// limit is a segment).
const MAX_PROPOSAL_BYTES: usize = 4 << 20;
/// Proposal entries submitted to raft and not yet answered. While they are in flight the
/// next group gathers, so under load each entry (one fsync) carries many commands.
const PROPOSALS_IN_FLIGHT: usize = 2;
/// A request that meets a member that just stopped leading tries the new leader this
/// many more times.
const MAX_LEADER_RETRIES: usize = 3;

/// A command waiting for its proposal entry.
#[derive(Debug)]
struct Pending {
    cmd: Command,
    tx: oneshot::Sender<Result<CommandResponse>>,
}

/// How to start a member's raft. [`RaftOptions::new`] fills in etcd's defaults.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    /// This member's id (etcd's member id).
    pub node_id: u64,
    /// The cluster's id: peers from another cluster are refused.
    pub cluster_id: u64,
    pub member: Member,
    /// `<data dir>/member`: holds `wal/`, `snap/` and the raft state files.
    pub member_dir: PathBuf,
    /// etcd's `--heartbeat-interval` (100 ms).
    pub heartbeat_ms: u64,
    /// etcd's `--election-timeout` (1000 ms).
    pub election_timeout_ms: u64,
    /// etcd's `--snapshot-count`: entries applied between snapshots (100 000).
    pub snapshot_count: u64,
    /// Entries kept after a snapshot for slow followers (etcd: 5000).
    pub snapshot_catchup_entries: u64,
    /// The members of a new cluster (`--initial-cluster`), this one included.
    pub initial_members: BTreeMap<u64, Member>,
    /// `--initial-cluster-state new`: a member with an empty log starts the cluster.
    pub new_cluster: bool,
    pub wal: WalOptions,
    pub durability: DurabilityPolicy,
    /// How https peer URLs are dialed (`--peer-*` TLS flags); `None`: they cannot be.
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
}

impl RaftOptions {
    /// A single-member new cluster with etcd's defaults.
    pub fn new(node_id: u64, member: Member, member_dir: PathBuf) -> RaftOptions {
        RaftOptions {
            node_id,
            cluster_id: 0,
            initial_members: BTreeMap::from([(node_id, member.clone())]),
            member,
            member_dir,
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5000,
            new_cluster: true,
            wal: WalOptions::default(),
            durability: DurabilityPolicy::default(),
            peer_tls: None,
        }
    }

    /// openraft's configuration for these options. A follower that hears nothing from
    /// its leader campaigns after openraft's leader lease (`election_timeout_max`) plus
    /// its own timeout from `[min, max)`; etcd campaigns within `[election, 2 × election)`
    /// and ignores votes for one election timeout after hearing from a leader. So `max`
    /// is the election timeout and `min` a tenth of it (docs/raft.md, "Timeouts").
    pub fn raft_config(&self) -> Result<Config> {
        let config = Config {
            cluster_name: "mnemo".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: (self.election_timeout_ms / 10).max(self.heartbeat_ms + 1),
            election_timeout_max: self.election_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_count.max(1)),
            // etcd keeps 5000 entries after a snapshot for slow followers to catch up from.
            max_in_snapshot_log_to_keep: self.snapshot_catchup_entries,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| Error::InvalidArgument(format!("raft configuration: {e}")))
    }

    /// How long a proposal may wait for its commit (etcd: 5 s + 2 × election timeout).
    fn request_timeout(&self) -> Duration {
        Duration::from_millis(5000 + 2 * self.election_timeout_ms)
    }
}

/// A member of the cluster as [`RaftNode::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: u64,
    pub member: Member,
    pub is_learner: bool,
}

/// A snapshot of this member's raft state.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub id: u64,
    pub leader: Option<u64>,
    pub state: ServerState,
    pub term: u64,
    pub last_log_index: Option<u64>,
    /// The last committed index this member knows of.
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub is_learner: bool,
    pub members: Vec<MemberStatus>,
}

/// One member's raft: owns openraft's handle; the store is shared with the server.
pub struct RaftNode<S: ApplyStore = Store> {
    raft: Raft,
    node_id: u64,
    store: Arc<S>,
    progress: Arc<Progress>,
    /// Dropped at shutdown: a restart in the same process must be able to open the WAL.
    wal_handle: parking_lot::Mutex<Option<WalHandle>>,
    proposals: mpsc::UnboundedSender<Pending>,
    io_path: IoPath,
    request_timeout: Duration,
    election_timeout: Duration,
    /// Channels to the other members.
    peers: Peers,
    /// This member's clients waiting for writes forwarded to the leader.
    forwarded: Arc<Waiters>,
}

impl<S: ApplyStore> std::fmt::Debug for RaftNode<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &self.node_id)
            .field("io_path", &self.io_path)
            .finish_non_exhaustive()
    }
}

/// Gathers queued proposals into [`Proposal`] entries, at most [`PROPOSALS_IN_FLIGHT`]
/// unanswered at a time, and hands each command its own response.
async fn group_proposals(raft: Raft, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let window = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = window.clone().acquire_owned().await else {
            break;
        };
        let mut bytes = first.cmd.encoded_len();
        let mut group = vec![first];
        while group.len() < MAX_PROPOSAL_COMMANDS && bytes < MAX_PROPOSAL_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.cmd.encoded_len();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let (commands, waiters): (Vec<Command>, Vec<_>) =
            group.into_iter().map(|p| (p.cmd, p.tx)).unzip();
        let n = commands.len();
        match raft.client_write_ff(Proposal { commands }).await {
            Err(e) => {
                let err = fatal_to_error(e);
                for w in waiters {
                    let _ = w.send(Err(err.clone()));
                }
            }
            Ok(resp) => {
                tokio::spawn(async move {
                    let result = match resp.await {
                        Err(_) => Err(Error::Stopped),
                        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                            Err(if f.leader_id.is_some() {
                                Error::NotLeader
                            } else {
                                Error::NoLeader
                            })
                        }
                        Ok(Err(ClientWriteError::ChangeMembershipError(e))) => {
                            Err(Error::Internal(e.to_string()))
                        }
                        Ok(Ok(r)) if r.data.len() == n => Ok(r.data),
                        Ok(Ok(r)) => Err(Error::Internal(format!(
                            "a proposal of {n} commands was answered with {} responses",
                            r.data.len()
                        ))),
                    };
                    drop(permit);
                    match result {
                        Ok(responses) => {
                            for (w, r) in waiters.into_iter().zip(responses) {
                                let _ = w.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            for w in waiters {
                                let _ = w.send(Err(e.clone()));
                            }
                        }
                    }
                });
            }
        }
    }
}

/// The error a leader's [`PeerError`] stands for (`Ok` for none).
pub fn peer_error(e: Option<PeerError>) -> Result<()> {
    let Some(e) = e else { return Ok(()) };
    Err(
        match PeerCode::try_from(e.code).unwrap_or(PeerCode::Rejected) {
            PeerCode::Ok => return Ok(()),
            PeerCode::NotLeader => Error::NotLeader,
            PeerCode::NoLeader => Error::NoLeader,
            PeerCode::Timeout => Error::Timeout,
            PeerCode::Stopped => Error::Stopped,
            PeerCode::LeaseNotFound => Error::LeaseNotFound,
            PeerCode::Rejected => Error::Remote(tonic::Code::from_i32(e.grpc_code), e.message),
        },
    )
}

/// The [`PeerError`] for an error the leader met doing what a follower asked.
pub fn to_peer_error(e: &Error) -> PeerError {
    let code = match e {
        Error::NotLeader => PeerCode::NotLeader,
        Error::NoLeader => PeerCode::NoLeader,
        Error::Timeout => PeerCode::Timeout,
        Error::Stopped => PeerCode::Stopped,
        Error::LeaseNotFound => PeerCode::LeaseNotFound,
        _ => PeerCode::Rejected,
    };
    let (grpc_code, message) = e.code_and_message();
    PeerError {
        code: code as i32,
        grpc_code: grpc_code as i32,
        message: message.into_owned(),
    }
}

/// A failed call to the leader: it is gone or unreachable, so there is no leader to
/// serve the request for now.
pub fn peer_status_error(s: &tonic::Status) -> Error {
    tracing::debug!(code = ?s.code(), message = s.message(), "request to the leader failed");
    match s.code() {
        tonic::Code::DeadlineExceeded => Error::Timeout,
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => Error::NoLeader,
        _ => Error::Internal(format!("leader: {}", s.message())),
    }
}

fn fatal_to_error<E: std::fmt::Display>(e: E) -> Error {
    tracing::warn!(error = %e, "raft stopped");
    Error::Stopped
}

impl<S: ApplyStore> RaftNode<S> {
    /// Opens the log and state machine in `opts.member_dir` and starts raft. A fresh
    /// directory with `new_cluster` initializes the cluster with `initial_members`; an
    /// existing one restarts from its log (entries after the store's applied index are
    /// applied again).
    pub async fn start(opts: RaftOptions, store: Arc<S>, on_applied: OnApplied) -> Result<Self> {
        let config = Arc::new(opts.raft_config()?);
        let progress = Arc::new(Progress::default());
        let internal =
            |what: &str, e: &dyn std::fmt::Display| Error::Internal(format!("{what}: {e}"));
        let mut log = {
            let dir = opts.member_dir.clone();
            let wal = opts.wal.clone();
            let p = progress.clone();
            tokio::task::spawn_blocking(move || LogStore::open(&dir, wal, p))
                .await
                .map_err(|e| internal("opening the raft log", &e))?
                .map_err(|e| internal("opening the raft log", &e))?
        };
        let sm = {
            let dir = opts.member_dir.clone();
            let p = progress.clone();
            let store = store.clone();
            let policy = opts.durability;
            tokio::task::spawn_blocking(move || {
                StateMachine::open(store, &dir, p, policy, on_applied)
            })
            .await
            .map_err(|e| internal("opening the state machine", &e))??
        };
        let forwarded = Arc::new(Waiters::new(opts.node_id));
        let mut sm = sm.with_forwarded(forwarded.clone());
        let mut peers = Peers::new(opts.cluster_id, opts.node_id);
        peers.retry = Duration::from_millis(opts.heartbeat_ms.max(1));
        peers.tls = opts.peer_tls.clone();
        let log_state = log
            .get_log_state()
            .await
            .map_err(|e| internal("reading the raft log", &e))?;
        let vote = log
            .read_vote()
            .await
            .map_err(|e| internal("reading the raft vote", &e))?;
        let (applied, _) = sm
            .applied_state()
            .await
            .map_err(|e| internal("reading the state machine", &e))?;
        let fresh = log_state.last_log_id.is_none() && vote.is_none() && applied.is_none();
        let io_path = log.wal().io_path();
        let wal_handle = log.wal_handle();
        let raft = Raft::new(opts.node_id, config, peers.clone(), log, sm)
            .await
            .map_err(|e| internal("starting raft", &e))?;
        if fresh && opts.new_cluster {
            tracing::info!(members = ?opts.initial_members.keys().collect::<Vec<_>>(), "initializing a new cluster");
            raft.initialize(opts.initial_members.clone())
                .await
                .map_err(|e| internal("initializing the cluster", &e))?;
        }
        let (proposals, rx) = mpsc::unbounded_channel();
        tokio::spawn(group_proposals(raft.clone(), rx));
        Ok(RaftNode {
            proposals,
            raft,
            node_id: opts.node_id,
            store,
            progress,
            wal_handle: parking_lot::Mutex::new(Some(wal_handle)),
            io_path,
            request_timeout: opts.request_timeout(),
            election_timeout: Duration::from_millis(opts.election_timeout_ms),
            peers,
            forwarded,
        })
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.node_id
    }

    /// openraft's handle (membership changes, metrics).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The store this node applies to.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// How the WAL reaches the disk.
    pub fn io_path(&self) -> IoPath {
        self.io_path
    }

    /// How long the WAL's fdatasyncs took, while the node runs.
    pub fn wal_fsync_latency(&self) -> Option<mnemo_storage::histogram::HistogramSnapshot> {
        self.wal_handle
            .lock()
            .as_ref()
            .map(|h| h.wal().fsync_latency())
    }

    /// Commands proposed through this member's raft and not yet answered.
    pub fn proposed(&self) -> usize {
        self.progress.proposed()
    }

    /// WAL counters (fsyncs, batches, records), while the node runs.
    pub fn wal_stats(&self) -> Option<WalStats> {
        self.wal_handle.lock().as_ref().map(|h| h.wal().stats())
    }

    /// Proposes `cmd` and returns its result once applied here. On the leader, concurrent
    /// proposals are grouped into one raft entry (see [`Proposal`]); a follower forwards
    /// the command to the leader and answers when it applies the entry itself.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResponse> {
        self.refuse_learner()?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut attempt = 0;
        loop {
            let leader = self.leader_until(deadline).await?;
            let r = if leader == self.node_id {
                self.propose_local(cmd.clone(), deadline).await
            } else {
                self.forward(leader, cmd.clone(), deadline).await
            };
            // "Not leader" means the command was not appended: try the new leader.
            match r {
                Err(Error::NotLeader) if attempt < MAX_LEADER_RETRIES => {
                    attempt += 1;
                    self.wait_leader_change(leader, deadline).await;
                }
                r => return r,
            }
        }
    }

    /// Waits (at most an election timeout, and not past `deadline`) until the member
    /// this one calls leader is no longer `leader`.
    async fn wait_leader_change(&self, leader: u64, deadline: tokio::time::Instant) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = self
            .raft
            .wait(Some(left.min(self.election_timeout)))
            .metrics(|m| m.current_leader != Some(leader), "a leader change")
            .await;
    }

    /// Proposes `cmd` through this member's own raft (which must be leading).
    pub async fn propose_local(
        &self,
        cmd: Command,
        deadline: tokio::time::Instant,
    ) -> Result<CommandResponse> {
        let (tx, rx) = oneshot::channel();
        let _proposed = self.progress.propose();
        self.proposals
            .send(Pending { cmd, tx })
            .map_err(|_| Error::Stopped)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Stopped),
            Ok(Ok(r)) => r,
        }
    }

    async fn forward(
        &self,
        leader: u64,
        mut cmd: Command,
        deadline: tokio::time::Instant,
    ) -> Result<CommandResponse> {
        let (id, mut applied) = self.forwarded.register();
        cmd.forwarded_by = self.node_id;
        cmd.forward_id = id;
        let result = async {
            let mut client = self.leader_client(leader)?;
            let mut req = tonic::Request::new(ProposeRequest {
                header: self.peers.header(leader),
                command: cmd.encode_to_vec(),
            });
            req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
            // The call runs to its end in its own task even when the local apply answers
            // first: a dropped call resets its HTTP/2 stream, and the leader's reply on a
            // stream the client already forgot counts against the connection's reset
            // limit, which would close the channel raft replication shares.
            let mut call = tokio::spawn(async move { client.propose(req).await });
            tokio::select! {
                r = &mut applied => return r.map_err(|_| Error::Stopped),
                r = &mut call => {
                    let r = r.map_err(|e| Error::Internal(format!("forwarding task: {e}")))?;
                    let resp = r.map_err(|s| peer_status_error(&s))?.into_inner();
                    peer_error(resp.error)?;
                }
            }
            // The leader applied it; this member applies it soon.
            match tokio::time::timeout_at(deadline, applied).await {
                Err(_) => Err(Error::Timeout),
                Ok(r) => r.map_err(|_| Error::Stopped),
            }
        };
        let result = match tokio::time::timeout_at(deadline, result).await {
            Err(_) => Err(Error::Timeout),
            Ok(r) => r,
        };
        if result.is_err() {
            self.forwarded.cancel(id);
        }
        result
    }

    /// A learner serves only serializable reads and status, as in etcd.
    fn refuse_learner(&self) -> Result<()> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let is_learner = membership.get_node(&self.node_id).is_some()
            && !membership.voter_ids().any(|v| v == self.node_id);
        if is_learner {
            return Err(Error::NotSupportedForLearner);
        }
        Ok(())
    }

    /// The current leader, waiting until `deadline` for one to be elected.
    async fn leader_until(&self, deadline: tokio::time::Instant) -> Result<u64> {
        if let Some(l) = self.raft.metrics().borrow().current_leader {
            return Ok(l);
        }
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.wait_for_leader(wait).await {
            Ok(l) => Ok(l),
            Err(_) => Err(Error::NoLeader),
        }
    }

    /// A client of the leader's peer service.
    pub fn leader_client(
        &self,
        leader: u64,
    ) -> Result<mnemo_proto::mnemopeerpb::peer_client::PeerClient<tonic::transport::Channel>> {
        let member = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config.membership().get_node(&leader).cloned()
        };
        let member = member.ok_or(Error::NoLeader)?;
        self.peers.member_client(&member).map_err(Error::Internal)
    }

    /// The current leader and a client of its peer service, for requests only the leader
    /// answers (lease keep-alives). `None` when this member leads.
    pub async fn remote_leader(
        &self,
    ) -> Result<
        Option<(
            u64,
            mnemo_proto::mnemopeerpb::peer_client::PeerClient<tonic::transport::Channel>,
        )>,
    > {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let leader = self.leader_until(deadline).await?;
        if leader == self.node_id {
            return Ok(None);
        }
        Ok(Some((leader, self.leader_client(leader)?)))
    }

    /// Channels to the other members.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// How long a request waits for the cluster before it fails.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Confirms leadership with a quorum and waits until the read index is applied here;
    /// returns the read index. A read of the store after this is linearizable. A follower
    /// asks the leader for the index.
    pub async fn read_index(&self) -> Result<u64> {
        self.refuse_learner()?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut attempt = 0;
        let index = loop {
            let leader = self.leader_until(deadline).await?;
            let r = if leader == self.node_id {
                self.leader_read_index(deadline).await
            } else {
                self.remote_read_index(leader, deadline).await
            };
            match r {
                Err(Error::NotLeader) if attempt < MAX_LEADER_RETRIES => {
                    attempt += 1;
                    self.wait_leader_change(leader, deadline).await;
                }
                r => break r?,
            }
        };
        self.wait_applied(index, deadline).await?;
        Ok(index)
    }

    async fn remote_read_index(&self, leader: u64, deadline: tokio::time::Instant) -> Result<u64> {
        let mut client = self.leader_client(leader)?;
        let mut req = tonic::Request::new(self.peers.header(leader).unwrap_or_default());
        req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let resp = match tokio::time::timeout_at(deadline, client.read_index(req)).await {
            Err(_) => return Err(Error::Timeout),
            Ok(r) => r.map_err(|s| peer_status_error(&s))?.into_inner(),
        };
        peer_error(resp.error)?;
        Ok(resp.index)
    }

    /// The leader's read index: leadership confirmed by a quorum now. Errors on a member
    /// that does not lead.
    pub async fn leader_read_index(&self, deadline: tokio::time::Instant) -> Result<u64> {
        match tokio::time::timeout_at(deadline, self.raft.get_read_log_id()).await {
            Err(_) => Err(Error::Timeout),
            Ok(Ok((read, _applied))) => Ok(read.map_or(0, |id| id.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(if f.leader_id.is_some() {
                    Error::NotLeader
                } else {
                    Error::NoLeader
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(Error::Timeout)
            }
            Ok(Err(RaftError::Fatal(e))) => Err(fatal_to_error(e)),
        }
    }

    /// Waits until this member has applied `index`.
    pub async fn wait_applied(&self, index: u64, deadline: tokio::time::Instant) -> Result<()> {
        if self.progress.applied().is_some_and(|a| a >= index) || index == 0 {
            return Ok(());
        }
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "read index")
            .await
            .map(|_| ())
            .map_err(|_| Error::Timeout)
    }

    /// Waits until some member is leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| Error::NoLeader)?;
        m.current_leader.ok_or(Error::NoLeader)
    }

    /// This member's raft state.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let learners: std::collections::BTreeSet<u64> = membership.learner_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, member)| MemberStatus {
                id: *id,
                member: member.clone(),
                is_learner: learners.contains(id),
            })
            .collect();
        RaftStatus {
            id: m.id,
            leader: m.current_leader,
            state: m.state,
            term: m.current_term,
            last_log_index: m.last_log_index,
            commit_index: self.progress.committed(),
            applied_index: m.last_applied.map(|a| a.index),
            is_learner: learners.contains(&m.id),
            members,
        }
    }

    /// Stops raft, then makes every applied batch durable. Drop the node before opening
    /// its directory again.
    pub async fn shutdown(&self) -> Result<()> {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.wal_handle.lock().take();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.sync())
            .await
            .map_err(|e| Error::Internal(format!("final store sync: {e}")))??;
        if let Some(a) = self.progress.applied() {
            self.progress.set_durable_applied(a);
        }
        Ok(())
    }
}
