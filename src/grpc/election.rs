//! etcd's Election service (`v3electionpb.Election`).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use mnemo_proto::v3electionpb::election_server::Election;
use mnemo_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct ElectionService {
    pub server: Arc<EtcdServer>,
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        Ok(Response::new(
            self.server
                .campaign(req.into_inner())
                .await
                .map_err(Error::concurrency_status)?,
        ))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        Ok(Response::new(
            self.server
                .proclaim(req.into_inner())
                .await
                .map_err(Error::concurrency_status)?,
        ))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        Ok(Response::new(
            self.server
                .leader(&req.into_inner().name)
                .await
                .map_err(Error::concurrency_status)?,
        ))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let rx = self.server.observe(req.into_inner().name);
        // The item type is tonic's, `Result<_, Status>`, large error and all.
        #[allow(clippy::result_large_err)]
        let stream = ReceiverStream::new(rx).map(|r| r.map_err(Error::concurrency_status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        Ok(Response::new(
            self.server
                .resign(req.into_inner())
                .await
                .map_err(Error::concurrency_status)?,
        ))
    }
}
