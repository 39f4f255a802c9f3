//! Thin tonic services for etcd's API. They hold no logic: each call goes to
//! [`EtcdServer`](crate::server::EtcdServer), and errors become statuses in one place
//! ([`crate::error`]). The client port serves them beside etcd's HTTP endpoints
//! ([`http`]): one listener, HTTP/2 for gRPC (prior knowledge, as etcd's clients dial)
//! and HTTP/1.1 for the rest.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod gateway;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod peer;
pub mod stats;
pub mod watch;

use std::sync::Arc;

use mnemo_proto::etcdserverpb::auth_server::AuthServer;
use mnemo_proto::etcdserverpb::cluster_server::ClusterServer;
use mnemo_proto::etcdserverpb::kv_server::KvServer;
use mnemo_proto::etcdserverpb::lease_server::LeaseServer;
use mnemo_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use mnemo_proto::v3electionpb::election_server::ElectionServer;
use mnemo_proto::v3lockpb::lock_server::LockServer;
use tonic::service::Routes;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::server::{Credentials, EtcdServer};

/// Room gRPC framing may take beyond `--max-request-bytes` (etcd allows the same), so
/// that a request slightly over the limit gets etcd's "request is too large" error from
/// the server rather than a transport error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The auth token a request carries in its gRPC metadata (`token`, where etcd's clients
/// put it).
pub fn token<T>(req: &tonic::Request<T>) -> Option<&str> {
    req.metadata().get("token").and_then(|v| v.to_str().ok())
}

/// The CN of the verified client certificate of the request's TLS connection (see
/// [`crate::tls::incoming`]); `None` on plain connections and without a certificate.
pub fn common_name<T>(req: &tonic::Request<T>) -> Option<&str> {
    req.extensions()
        .get::<crate::tls::TlsConnInfo>()
        .and_then(|info| info.common_name.as_deref())
}

/// What a request shows of who sends it: its token and its client certificate's CN.
pub fn credentials<T>(req: &tonic::Request<T>) -> Credentials<'_> {
    Credentials {
        token: token(req),
        common_name: common_name(req),
    }
}

/// Every client-facing service and HTTP endpoint, ready to serve.
pub fn router(server: Arc<EtcdServer>) -> Router {
    let max_recv = server.options.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(kv::KvService {
        server: server.clone(),
    })
    .max_decoding_message_size(max_recv)
    .max_encoding_message_size(usize::MAX);
    let lease = LeaseServer::new(lease::LeaseService {
        server: server.clone(),
    })
    .max_decoding_message_size(max_recv);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService {
        server: server.clone(),
    })
    .max_decoding_message_size(max_recv)
    .max_encoding_message_size(usize::MAX);
    let auth = AuthServer::new(auth::AuthService {
        server: server.clone(),
    })
    .max_decoding_message_size(max_recv);
    let cluster = ClusterServer::new(cluster::ClusterService {
        server: server.clone(),
    });
    let watch_service = watch_service(&server, max_recv);
    let watch = watch_service
        .clone()
        .into_server()
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let lock = LockServer::new(lock::LockService {
        server: server.clone(),
    })
    .max_decoding_message_size(max_recv);
    let election = ElectionServer::new(election::ElectionService {
        server: server.clone(),
    })
    .max_decoding_message_size(max_recv);
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(Arc::downgrade(&server), reporter));
    let grpc = Routes::new(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(auth)
        .add_service(lock)
        .add_service(election)
        .add_service(health)
        .into_axum_router();
    let stats = server.grpc_stats.clone();
    let routes = grpc
        .merge(gateway::routes(server.clone(), watch_service))
        .merge(http::routes(server))
        .fallback(http::fallback)
        .layer(axum::middleware::from_fn_with_state(
            stats,
            stats::count_calls,
        ));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .accept_http1(true)
        .add_routes(Routes::from(routes))
}

/// The Watch service over the server's hub, checking each watch against the caller's
/// permissions.
fn watch_service(server: &Arc<EtcdServer>, max_recv: usize) -> watch::WatchService {
    let header_server = server.clone();
    let header: Arc<dyn watch::HeaderSource> =
        Arc::new(move |revision: i64| header_server.header(revision));
    let watch_config = watch::WatchServiceConfig {
        progress_interval: server.options.watch_progress_notify_interval,
        max_response_bytes: max_recv,
    };
    let authorizer_server = server.clone();
    let authorizer: Arc<dyn watch::WatchAuthorizer> = Arc::new(
        move |credentials: Credentials<'_>, key: &[u8], range_end: &[u8]| {
            authorizer_server
                .access(credentials)
                .and_then(|a| a.read(key, range_end))
        },
    );
    watch::WatchService::new(server.hub.clone(), header, watch_config).with_authorizer(authorizer)
}

/// grpc.health.v1: the server ("") is SERVING while a leader is known, NOT_SERVING
/// while none is.
async fn report_health(server: std::sync::Weak<EtcdServer>, reporter: HealthReporter) {
    let Some(mut changes) = server.upgrade().map(|s| s.raft.raft().metrics()) else {
        return;
    };
    let mut last = None;
    loop {
        let has_leader = changes.borrow_and_update().current_leader.is_some();
        if last != Some(has_leader) {
            let status = if has_leader {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            last = Some(has_leader);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
