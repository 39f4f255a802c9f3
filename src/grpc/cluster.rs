//! etcd's Cluster service: the member list. Membership changes come with clustering.

use std::sync::Arc;

use mnemo_proto::etcdserverpb::cluster_server::Cluster;
use mnemo_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(Error::Unsupported("adding members").into())
    }

    async fn member_remove(
        &self,
        _req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Error::Unsupported("removing members").into())
    }

    async fn member_update(
        &self,
        _req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Error::Unsupported("updating members").into())
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.server.raft.read_index().await?;
        }
        // etcd's Cluster service headers carry no revision.
        let header = mnemo_proto::etcdserverpb::ResponseHeader {
            revision: 0,
            ..self.server.header(0)
        };
        Ok(Response::new(MemberListResponse {
            header: Some(header),
            members: self.server.members(),
        }))
    }

    async fn member_promote(
        &self,
        _req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Error::Unsupported("promoting learners").into())
    }
}
