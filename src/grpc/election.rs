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

use super::credentials;
use crate::error::Error;
use crate::server::EtcdServer;

#[derive(Debug, Clone)]
pub struct ElectionService {
    pub server: Arc<EtcdServer>,
}

impl ElectionService {
    /// Checks the caller's permissions on the election's keys (`name/...`), or on one
    /// leader key.
    // The service methods' own error type, large as it is.
    #[allow(clippy::result_large_err)]
    fn check<T>(&self, req: &Request<T>, keys: Keys<'_>) -> Result<(), Status> {
        self.server
            .access(credentials(req))
            .and_then(|a| match keys {
                Keys::Election(name, write) => self.server.check_concurrency(&a, name, write),
                Keys::Leader(key) => a.write(key, &[]),
            })
            .map_err(Error::concurrency_status)
    }
}

enum Keys<'a> {
    Election(&'a [u8], bool),
    Leader(&'a [u8]),
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        self.check(&req, Keys::Election(&req.get_ref().name, true))?;
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
        let key = req.get_ref().leader.as_ref().map_or(&[][..], |l| &l.key);
        self.check(&req, Keys::Leader(key))?;
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
        self.check(&req, Keys::Election(&req.get_ref().name, false))?;
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
        self.check(&req, Keys::Election(&req.get_ref().name, false))?;
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
        let key = req.get_ref().leader.as_ref().map_or(&[][..], |l| &l.key);
        self.check(&req, Keys::Leader(key))?;
        Ok(Response::new(
            self.server
                .resign(req.into_inner())
                .await
                .map_err(Error::concurrency_status)?,
        ))
    }
}
