//! Thin tonic services for etcd's API. They hold no logic: each call goes to
//! [`EtcdServer`](crate::server::EtcdServer), and errors become statuses in one place
//! ([`crate::error`]).

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;

use std::sync::Arc;

use mnemo_proto::etcdserverpb::cluster_server::ClusterServer;
use mnemo_proto::etcdserverpb::kv_server::KvServer;
use mnemo_proto::etcdserverpb::lease_server::LeaseServer;
use mnemo_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use tonic::transport::server::Router;

use crate::server::EtcdServer;

/// Room gRPC framing may take beyond `--max-request-bytes` (etcd allows the same), so
/// that a request slightly over the limit gets etcd's "request is too large" error from
/// the server rather than a transport error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Every client-facing service, ready to serve.
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
    let cluster = ClusterServer::new(cluster::ClusterService {
        server: server.clone(),
    });
    let header_server = server.clone();
    let header: Arc<dyn watch::HeaderSource> =
        Arc::new(move |revision: i64| header_server.header(revision));
    let watch_config = watch::WatchServiceConfig {
        progress_interval: server.options.watch_progress_notify_interval,
        max_response_bytes: max_recv,
    };
    let watch = watch::WatchService::new(server.hub.clone(), header, watch_config)
        .into_server()
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(maintenance)
        .add_service(cluster)
}
