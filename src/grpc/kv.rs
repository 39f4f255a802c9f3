//! etcd's KV service.

use std::sync::Arc;

use mnemo_proto::etcdserverpb::kv_server::Kv;
use mnemo_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::credentials;
use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct KvService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let access = self.server.access(credentials(&req))?;
        Ok(Response::new(
            self.server.range(&access, req.into_inner()).await?,
        ))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let access = self.server.access(credentials(&req))?;
        Ok(Response::new(
            self.server.put(&access, req.into_inner()).await?,
        ))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let access = self.server.access(credentials(&req))?;
        Ok(Response::new(
            self.server.delete_range(&access, req.into_inner()).await?,
        ))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let access = self.server.access(credentials(&req))?;
        Ok(Response::new(
            self.server.txn(&access, req.into_inner()).await?,
        ))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        // etcd 3.4 checks only the token of a compaction, not the caller's permissions.
        self.server.access(credentials(&req))?;
        Ok(Response::new(self.server.compact(req.into_inner()).await?))
    }
}
