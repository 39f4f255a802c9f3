//! etcd's Cluster service: the member list and membership changes (done by the leader,
//! see src/server/membership.rs).

use std::sync::Arc;

use mnemo_proto::etcdserverpb::cluster_server::Cluster;
use mnemo_proto::etcdserverpb::ResponseHeader;
use mnemo_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use mnemo_proto::mnemopeerpb::change_members_request::Change;
use mnemo_proto::mnemopeerpb::MemberInfo;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

impl ClusterService {
    /// etcd's Cluster service headers carry no revision.
    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: 0,
            ..self.server.header(0)
        })
    }

    /// A new member's id, as etcd makes it: from its peer URLs, the cluster token and
    /// the time, so a member added again after removal gets a new id.
    fn new_member_id(&self, peer_urls: &[String]) -> u64 {
        let mut urls = peer_urls.to_vec();
        urls.sort();
        let mut hasher = sha1_smol::Sha1::new();
        for u in &urls {
            hasher.update(u.as_bytes());
        }
        hasher.update(self.server.options.cluster_token.as_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        hasher.update(&now.to_be_bytes());
        let digest = hasher.digest().bytes();
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(head)
    }
}

/// etcd's check of MemberAdd and MemberUpdate URLs.
// Status is what every service method returns; boxing it here would only move the cost.
#[allow(clippy::result_large_err)]
fn check_peer_urls(urls: &[String]) -> Result<(), Status> {
    if urls.is_empty() {
        return Err(Status::invalid_argument(
            "etcdserver: member peer URLs cannot be empty",
        ));
    }
    for u in urls {
        if let Err(e) = crate::config::Url::parse(u) {
            return Err(Status::invalid_argument(format!(
                "etcdserver: invalid peer URL {u:?}: {e}"
            )));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = req.into_inner();
        check_peer_urls(&req.peer_ur_ls)?;
        let info = MemberInfo {
            id: self.new_member_id(&req.peer_ur_ls),
            name: String::new(),
            peer_urls: req.peer_ur_ls,
            client_urls: vec![],
            is_learner: req.is_learner,
        };
        let id = info.id;
        let members = self.server.change_members(Change::Add(info)).await?;
        let member = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        let members = self.server.change_members(Change::Remove(id)).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = req.into_inner();
        check_peer_urls(&req.peer_ur_ls)?;
        let change = Change::Update(MemberInfo {
            id: req.id,
            peer_urls: req.peer_ur_ls,
            ..Default::default()
        });
        let members = self.server.change_members(change).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.server.raft.read_index().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.server.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        let members = self.server.change_members(Change::Promote(id)).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members,
        }))
    }
}
