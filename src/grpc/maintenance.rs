//! etcd's Maintenance service.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use mnemo_proto::etcdserverpb::maintenance_server::Maintenance;
use mnemo_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::credentials;
use crate::error::Error;
use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

impl MaintenanceService {
    /// Defragment, Snapshot, Hash and HashKV need root once auth is enabled.
    // The service methods' own error type, large as it is.
    #[allow(clippy::result_large_err)]
    fn admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.server
            .access(credentials(req))
            .and_then(|a| a.admin())
            .map_err(Error::maintenance_status)
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        self.server.access(credentials(&req))?;
        Ok(Response::new(self.server.alarm(req.into_inner()).await?))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.server.access(credentials(&req))?;
        Ok(Response::new(self.server.status()))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&req)?;
        self.server.defragment().await?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.server.header(0)),
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&req)?;
        Ok(Response::new(self.server.hash().await?))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&req)?;
        Ok(Response::new(
            self.server.hash_kv(req.into_inner().revision).await?,
        ))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&req)?;
        let rx = self.server.snapshot().await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.admin(&req)?;
        let target = req.into_inner().target_id;
        self.server.move_leader(target).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.server.header(0)),
        }))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Error::Unsupported("downgrade").into())
    }
}
