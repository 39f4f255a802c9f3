//! Raft: openraft 0.9 over the WAL (log) and the MVCC store (state machine).
//!
//! * [`TypeConfig`]: a normal entry carries a [`Proposal`] (the [`Command`]s of one group
//!   of concurrent proposals) and answers one [`CommandResponse`] per command; node ids are
//!   etcd's u64 member ids, node data a [`Member`].
//! * [`log_store`]: `RaftLogStorage` over `mnemo_storage::Wal` (group commit), the vote in
//!   a small durable file, lazy purging behind the store's durable applied index.
//! * [`state_machine`]: `RaftStateMachine` over `mvcc::Store`; apply is a pure function
//!   of (store state, entries); snapshots are point-in-time copies of the page file.
//! * [`network`]: the peer seam (every peer unreachable until the peer transport lands).
//! * [`RaftNode`]: what the server uses: start, propose, read index, status, shutdown.
//!
//! docs/raft.md explains the choices (timeouts, durability, snapshots); docs/format.md
//! has the byte layouts.

pub mod codec;
pub mod forward;
pub mod hard_state;
pub mod log_store;
pub mod network;
pub mod node;
pub mod snapshot;
pub mod state_machine;
pub mod wire;

use crate::command::{Command, CommandResponse};

pub use log_store::{LogStore, Progress};
pub use node::{MemberStatus, RaftNode, RaftOptions, RaftStatus};
pub use openraft::ServerState;
pub use state_machine::{
    ApplyBatch, ApplyStore, DurabilityPolicy, OnApplied, StateMachine, META_APPLIED,
    META_MEMBERSHIP,
};

/// A cluster member as raft knows it: etcd's `Member` without the id (the raft node id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// The payload of a normal raft entry: the commands of concurrent proposals grouped by
/// [`RaftNode::propose`], applied in order (each with its own revision, as if proposed one
/// by one) and answered in order.
///
/// Why not one command per entry: openraft 0.9's core waits for each append to be durable
/// before it takes the next client write, so one entry per command costs one fsync per
/// command whatever the concurrency. Grouping restores the WAL's group commit.
// Format: protobuf message; field 1 repeated Command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Proposal {
    #[prost(message, repeated, tag = "1")]
    pub commands: Vec<Command>,
}

impl Proposal {
    pub fn one(cmd: Command) -> Self {
        Self {
            commands: vec![cmd],
        }
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for mnemo.
    ///
    /// `SnapshotData` is a file: a snapshot is a copy of the whole page file, possibly
    /// gigabytes, which must not be held in memory (a `Cursor<Vec<u8>>` would).
    pub TypeConfig:
        D = Proposal,
        R = Vec<CommandResponse>,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's handle specialised to mnemo.
pub type Raft = openraft::Raft<TypeConfig>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
