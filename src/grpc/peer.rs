//! The peer service (mnemo's own, proto/proto/mnemopeerpb/peer.proto) on the peer URLs:
//! raft's RPCs into openraft, and the requests followers send their leader.
//!
//! Every request names its cluster and the member it is for; a request from another
//! cluster, or for another member (a stale address after a member was replaced), is
//! refused and logged.

use std::sync::Arc;

use mnemo_proto::mnemopeerpb::peer_server::{Peer, PeerServer};
use mnemo_proto::mnemopeerpb::{
    ChangeMembersRequest, ChangeMembersResponse, LeaseRequest, LeaseResponse, MemberInfo,
    MembersResponse, PeerError, PeerHeader, ProposeRequest, ProposeResponse, RaftRequest,
    RaftResponse, ReadIndexResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::command::Command;
use crate::error::Error;
use crate::raft::network::MAX_PEER_MESSAGE;
use crate::raft::node::to_peer_error;
use crate::raft::wire;
use crate::server::{EtcdServer, LeaseCall};

/// The peer service of one member.
#[derive(Debug, Clone)]
pub struct PeerService {
    pub server: Arc<EtcdServer>,
}

impl PeerService {
    pub fn into_server(self) -> PeerServer<PeerService> {
        PeerServer::new(self)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
    }

    /// Refuses requests from another cluster or meant for another member.
    #[allow(clippy::result_large_err)]
    fn check(&self, header: Option<&PeerHeader>) -> Result<(), Status> {
        let h = header.ok_or_else(|| Status::invalid_argument("peer request without a header"))?;
        let cluster_id = self.server.options.cluster_id;
        let member_id = self.server.options.member_id;
        if h.cluster_id != cluster_id {
            tracing::warn!(
                from = format_args!("{:x}", h.from),
                their_cluster = format_args!("{:x}", h.cluster_id),
                our_cluster = format_args!("{:x}", cluster_id),
                "refusing a peer request from another cluster (check --initial-cluster-token and --initial-cluster)"
            );
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: request for cluster {:x}, this member is in cluster {:x}",
                h.cluster_id, cluster_id
            )));
        }
        if h.to != 0 && h.to != member_id {
            tracing::warn!(
                from = format_args!("{:x}", h.from),
                to = format_args!("{:x}", h.to),
                "refusing a peer request meant for another member"
            );
            return Err(Status::failed_precondition(format!(
                "member id mismatch: request for member {:x}, this is member {:x}",
                h.to, member_id
            )));
        }
        Ok(())
    }
}

impl PeerService {
    #[allow(clippy::result_large_err)]
    fn lease(&self, call: LeaseCall, req: LeaseRequest) -> Result<Response<LeaseResponse>, Status> {
        self.check(req.header.as_ref())?;
        Ok(Response::new(
            match self.server.leader_lease(call, req.id) {
                Ok((ttl, granted_ttl)) => LeaseResponse {
                    error: ok(),
                    ttl,
                    granted_ttl,
                },
                Err(e) => LeaseResponse {
                    error: err(&e),
                    ..Default::default()
                },
            },
        ))
    }
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("undecodable peer request: {e}"))
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

fn ok() -> Option<PeerError> {
    None
}

fn err(e: &Error) -> Option<PeerError> {
    Some(to_peer_error(e))
}

/// A member as the peer protocol carries it.
pub fn member_info(m: &mnemo_proto::etcdserverpb::Member) -> MemberInfo {
    MemberInfo {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_ur_ls.clone(),
        client_urls: m.client_ur_ls.clone(),
        is_learner: m.is_learner,
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let req = req.into_inner();
        self.check(req.header.as_ref())?;
        let rpc = wire::decode_append(&req.body).map_err(bad_request)?;
        let resp = self
            .server
            .raft
            .raft()
            .append_entries(rpc)
            .await
            .map_err(fatal)?;
        Ok(Response::new(RaftResponse {
            body: wire::encode_append_response(&resp),
        }))
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let req = req.into_inner();
        self.check(req.header.as_ref())?;
        let rpc = wire::decode_vote(&req.body).map_err(bad_request)?;
        let resp = self.server.raft.raft().vote(rpc).await.map_err(fatal)?;
        Ok(Response::new(RaftResponse {
            body: wire::encode_vote_response(&resp),
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let req = req.into_inner();
        self.check(req.header.as_ref())?;
        let rpc = wire::decode_install(&req.body).map_err(bad_request)?;
        let resp = self
            .server
            .raft
            .raft()
            .install_snapshot(rpc)
            .await
            .map_err(|e| Status::unavailable(format!("installing a snapshot: {e}")))?;
        Ok(Response::new(RaftResponse {
            body: wire::encode_install_response(&resp),
        }))
    }

    async fn propose(
        &self,
        req: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let req = req.into_inner();
        self.check(req.header.as_ref())?;
        let cmd = Command::decode(req.command.as_slice()).map_err(bad_request)?;
        let deadline = tokio::time::Instant::now() + self.server.raft.request_timeout();
        let error = match self.server.raft.propose_local(cmd, deadline).await {
            Ok(_) => ok(),
            Err(e) => err(&e),
        };
        Ok(Response::new(ProposeResponse { error }))
    }

    async fn read_index(
        &self,
        req: Request<PeerHeader>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let header = req.into_inner();
        self.check(Some(&header))?;
        let deadline = tokio::time::Instant::now() + self.server.raft.request_timeout();
        Ok(Response::new(
            match self.server.raft.leader_read_index(deadline).await {
                Ok(index) => ReadIndexResponse { error: ok(), index },
                Err(e) => ReadIndexResponse {
                    error: err(&e),
                    index: 0,
                },
            },
        ))
    }

    async fn lease_keep_alive(
        &self,
        req: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        self.lease(LeaseCall::KeepAlive, req.into_inner())
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        self.lease(LeaseCall::TimeToLive, req.into_inner())
    }

    async fn change_members(
        &self,
        req: Request<ChangeMembersRequest>,
    ) -> Result<Response<ChangeMembersResponse>, Status> {
        let req = req.into_inner();
        self.check(req.header.as_ref())?;
        let Some(change) = req.change else {
            return Err(Status::invalid_argument(
                "membership change without a change",
            ));
        };
        Ok(Response::new(
            match self.server.leader_change_members(change).await {
                Ok(members) => ChangeMembersResponse {
                    error: ok(),
                    members: members.iter().map(member_info).collect(),
                    index: self.server.raft.status().applied_index.unwrap_or(0),
                },
                Err(e) => ChangeMembersResponse {
                    error: err(&e),
                    ..Default::default()
                },
            },
        ))
    }

    async fn members(&self, req: Request<PeerHeader>) -> Result<Response<MembersResponse>, Status> {
        let header = req.into_inner();
        // Asked by members that do not know the cluster id yet.
        if header.cluster_id != 0 {
            self.check(Some(&header))?;
        }
        Ok(Response::new(MembersResponse {
            cluster_id: self.server.options.cluster_id,
            member_id: self.server.options.member_id,
            members: self.server.members().iter().map(member_info).collect(),
        }))
    }

    async fn timeout_now(&self, req: Request<PeerHeader>) -> Result<Response<PeerError>, Status> {
        let header = req.into_inner();
        self.check(Some(&header))?;
        let raft = self.server.raft.raft();
        if raft.metrics().borrow().current_leader == Some(self.server.options.member_id) {
            // A repeated request that arrives after this member won.
            return Ok(Response::new(PeerError::default()));
        }
        tracing::info!(
            from = format_args!("{:x}", header.from),
            "leader hands leadership over: campaigning"
        );
        raft.trigger().elect().await.map_err(fatal)?;
        Ok(Response::new(PeerError::default()))
    }
}
