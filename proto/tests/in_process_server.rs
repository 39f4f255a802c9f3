//! The generated servers and clients talking over real HTTP/2 on a loopback
//! TCP port: unary (Lock), bidirectional streaming (Watch) and server
//! streaming (Election/Observe). Shows that the server routes etcd's paths
//! and that the streaming shapes work end to end.

// tonic's Status is large; the stream items must be Result<_, Status> anyway.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::pin::Pin;

use mnemo_proto::etcdserverpb::watch_server::{Watch, WatchServer};
use mnemo_proto::etcdserverpb::{
    watch_client::WatchClient, watch_create_request::FilterType, watch_request, ResponseHeader,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use mnemo_proto::mvccpb::KeyValue;
use mnemo_proto::v3electionpb::election_server::{Election, ElectionServer};
use mnemo_proto::v3electionpb::{
    election_client::ElectionClient, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest,
    LeaderResponse, ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use mnemo_proto::v3lockpb::lock_server::{Lock, LockServer};
use mnemo_proto::v3lockpb::{
    lock_client::LockClient, LockRequest, LockResponse, UnlockRequest, UnlockResponse,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision,
        raft_term: 3,
    })
}

struct TestLock;

#[tonic::async_trait]
impl Lock for TestLock {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let req = req.into_inner();
        let mut key = req.name;
        key.extend_from_slice(format!("/{:x}", req.lease).as_bytes());
        Ok(Response::new(LockResponse {
            header: header(10),
            key,
        }))
    }

    async fn unlock(
        &self,
        _req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        Err(Status::not_found("no such lock"))
    }
}

struct TestWatch;

#[tonic::async_trait]
impl Watch for TestWatch {
    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // Answer each create with `created`, each cancel with `canceled`.
        let out = req.into_inner().map(|msg| {
            let msg = msg?;
            Ok(match msg.request_union {
                Some(watch_request::RequestUnion::CreateRequest(c)) => WatchResponse {
                    header: header(c.start_revision),
                    watch_id: c.watch_id,
                    created: true,
                    ..Default::default()
                },
                Some(watch_request::RequestUnion::CancelRequest(c)) => WatchResponse {
                    header: header(0),
                    watch_id: c.watch_id,
                    canceled: true,
                    cancel_reason: "asked".to_owned(),
                    ..Default::default()
                },
                Some(watch_request::RequestUnion::ProgressRequest(_)) | None => WatchResponse {
                    header: header(99),
                    watch_id: -1,
                    ..Default::default()
                },
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
}

struct TestElection;

#[tonic::async_trait]
impl Election for TestElection {
    type ObserveStream = BoxStream<LeaderResponse>;

    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let req = req.into_inner();
        Ok(Response::new(CampaignResponse {
            header: header(5),
            leader: Some(LeaderKey {
                key: b"e/1".to_vec(),
                name: req.name,
                rev: 5,
                lease: req.lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        _req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        Err(Status::unimplemented("proclaim"))
    }

    async fn leader(
        &self,
        _req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        Err(Status::unimplemented("leader"))
    }

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let name = req.into_inner().name;
        let out = tokio_stream::iter(1..=3).map(move |rev| {
            Ok(LeaderResponse {
                header: header(rev),
                kv: Some(KeyValue {
                    key: name.clone(),
                    value: format!("v{rev}").into_bytes(),
                    mod_revision: rev,
                    ..Default::default()
                }),
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn resign(
        &self,
        _req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        Err(Status::unimplemented("resign"))
    }
}

async fn start_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .add_service(LockServer::new(TestLock))
        .add_service(WatchServer::new(TestWatch))
        .add_service(ElectionServer::new(TestElection))
        .serve_with_incoming(incoming);
    let handle = tokio::spawn(async move {
        server.await.expect("server runs");
    });
    (addr, handle)
}

#[tokio::test]
async fn unary_bidi_and_server_streaming_over_tcp() {
    let (addr, server) = start_server().await;
    let url = format!("http://{addr}");

    // Unary: /v3lockpb.Lock/Lock and an error status from /v3lockpb.Lock/Unlock.
    let mut lock = LockClient::connect(url.clone()).await.expect("connect");
    let resp = lock
        .lock(LockRequest {
            name: b"mylock".to_vec(),
            lease: 0xab,
        })
        .await
        .expect("lock")
        .into_inner();
    assert_eq!(resp.key, b"mylock/ab");
    assert_eq!(resp.header, header(10));
    let err = lock
        .unlock(UnlockRequest { key: resp.key })
        .await
        .expect_err("unlock fails");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "no such lock");

    // Bidirectional: /etcdserverpb.Watch/Watch.
    let mut watch = WatchClient::connect(url.clone()).await.expect("connect");
    let requests = vec![
        WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"a".to_vec(),
                    start_revision: 7,
                    watch_id: 3,
                    filters: vec![FilterType::Nodelete as i32],
                    ..Default::default()
                },
            )),
        },
        WatchRequest {
            request_union: Some(watch_request::RequestUnion::CancelRequest(
                mnemo_proto::etcdserverpb::WatchCancelRequest { watch_id: 3 },
            )),
        },
    ];
    let mut responses = watch
        .watch(tokio_stream::iter(requests))
        .await
        .expect("watch")
        .into_inner();
    let created = responses
        .message()
        .await
        .expect("recv")
        .expect("created response");
    assert!(created.created);
    assert_eq!(created.watch_id, 3);
    assert_eq!(created.header, header(7));
    let canceled = responses
        .message()
        .await
        .expect("recv")
        .expect("canceled response");
    assert!(canceled.canceled);
    assert_eq!(canceled.cancel_reason, "asked");
    assert!(
        responses.message().await.expect("recv").is_none(),
        "stream ends"
    );

    // Server streaming: /v3electionpb.Election/Observe, plus unary Campaign.
    let mut election = ElectionClient::connect(url).await.expect("connect");
    let won = election
        .campaign(CampaignRequest {
            name: b"e".to_vec(),
            lease: 9,
            value: b"v0".to_vec(),
        })
        .await
        .expect("campaign")
        .into_inner();
    assert_eq!(
        won.leader,
        Some(LeaderKey {
            name: b"e".to_vec(),
            key: b"e/1".to_vec(),
            rev: 5,
            lease: 9
        })
    );
    let mut observed = election
        .observe(LeaderRequest {
            name: b"e".to_vec(),
        })
        .await
        .expect("observe")
        .into_inner();
    let mut values = Vec::new();
    while let Some(msg) = observed.message().await.expect("recv") {
        values.push(msg.kv.expect("kv").value);
    }
    assert_eq!(values, vec![b"v1".to_vec(), b"v2".to_vec(), b"v3".to_vec()]);

    server.abort();
}
