//! etcd's Lock service (`v3lockpb.Lock`).

use std::sync::Arc;

use mnemo_proto::v3lockpb::lock_server::Lock;
use mnemo_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::credentials;
use crate::error::Error;
use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct LockService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let name = &req.get_ref().name;
        self.server
            .access(credentials(&req))
            .and_then(|a| self.server.check_concurrency(&a, name, true))
            .map_err(Error::concurrency_status)?;
        Ok(Response::new(
            self.server
                .lock(req.into_inner())
                .await
                .map_err(Error::concurrency_status)?,
        ))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        self.server
            .access(credentials(&req))
            .and_then(|a| a.write(&req.get_ref().key, &[]))
            .map_err(Error::concurrency_status)?;
        Ok(Response::new(
            self.server
                .unlock(req.into_inner())
                .await
                .map_err(Error::concurrency_status)?,
        ))
    }
}
