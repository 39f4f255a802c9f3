//! The peer network seam: how openraft reaches other members.
//!
//! For now every peer is unreachable: the peer gRPC transport (a service of our own on
//! the peer URL) comes with multi-member clusters. A single member never sends an RPC.
//! The transport will implement [`PeerClient`]'s three calls; nothing else changes.

use std::io;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{Member, TypeConfig};

/// Builds a [`PeerClient`] per peer.
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Member) -> PeerClient {
        PeerClient {
            target,
            member: node.clone(),
        }
    }
}

/// Sends raft RPCs to one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    target: u64,
    member: Member,
}

impl PeerClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, Member, E> {
        RPCError::Unreachable(Unreachable::new(&io::Error::other(format!(
            "no peer transport yet: member {:x} ({:?}) is unreachable",
            self.target, self.member.peer_urls
        ))))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        Err(self.unreachable())
    }
}
