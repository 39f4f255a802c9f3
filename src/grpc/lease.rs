//! etcd's Lease service. Keep-alives and time-to-live are answered by the leader's lease
//! clock; grants and revokes go through raft.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use mnemo_proto::etcdserverpb::lease_server::Lease;
use mnemo_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::credentials;
use crate::error::Error;
use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct LeaseService {
    pub server: Arc<EtcdServer>,
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        // etcd 3.4 checks only the token of a grant.
        self.server.access(credentials(&req))?;
        Ok(Response::new(
            self.server.lease_grant(req.into_inner()).await?,
        ))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let access = self.server.access(credentials(&req))?;
        Ok(Response::new(
            self.server.lease_revoke(&access, req.into_inner()).await?,
        ))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.server.access(credentials(&req))?;
        let mut input = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let server = self.server.clone();
        tokio::spawn(async move {
            loop {
                let msg = match input.message().await {
                    Ok(Some(msg)) => msg,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(%status, "lease keep-alive stream ended");
                        return;
                    }
                };
                let reply = match server.lease_keep_alive(msg.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(server.header(0)),
                        id: msg.id,
                        ttl,
                    }),
                    // etcd answers a keep-alive for an unknown lease with TTL 0.
                    Err(Error::LeaseNotFound) => Ok(LeaseKeepAliveResponse {
                        header: Some(server.header(0)),
                        id: msg.id,
                        ttl: 0,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let stop = reply.is_err();
                if tx.send(reply).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.server.access(credentials(&req))?;
        let req = req.into_inner();
        Ok(Response::new(
            self.server.lease_time_to_live(req.id, req.keys).await?,
        ))
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.server.access(credentials(&req))?;
        let leases = self
            .server
            .store
            .leases()
            .into_iter()
            .map(|l| LeaseStatus { id: l.id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.server.header(0)),
            leases,
        }))
    }
}
