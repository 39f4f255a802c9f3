//! Every RPC's full gRPC path, as the generated clients send it, against a
//! table of etcd's services and methods (etcd v3.5 rpc.proto, v3lock.proto,
//! v3election.proto).
//!
//! The clients run over an in-process recording transport: it stores the
//! request path of each call and answers with gRPC status UNIMPLEMENTED. The
//! declared result types also pin each method's streaming shape at compile
//! time (e.g. Watch is bidirectional, Snapshot streams responses only).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use mnemo_proto::etcdserverpb::{
    self as pb, auth_client::AuthClient, cluster_client::ClusterClient,
};
use mnemo_proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    watch_client::WatchClient,
};
use mnemo_proto::v3electionpb::{self as epb, election_client::ElectionClient};
use mnemo_proto::v3lockpb::{self as lpb, lock_client::LockClient};
use tonic::body::Body;
use tonic::codec::Streaming;
use tonic::codegen::{http, Service};
use tonic::Code;

/// etcd's services and their methods, in the order etcd declares them.
const ETCD_SERVICES: &[(&str, &str, &[&str])] = &[
    (
        "etcdserverpb",
        "KV",
        &["Range", "Put", "DeleteRange", "Txn", "Compact"],
    ),
    ("etcdserverpb", "Watch", &["Watch"]),
    (
        "etcdserverpb",
        "Lease",
        &[
            "LeaseGrant",
            "LeaseRevoke",
            "LeaseKeepAlive",
            "LeaseTimeToLive",
            "LeaseLeases",
        ],
    ),
    (
        "etcdserverpb",
        "Cluster",
        &[
            "MemberAdd",
            "MemberRemove",
            "MemberUpdate",
            "MemberList",
            "MemberPromote",
        ],
    ),
    (
        "etcdserverpb",
        "Maintenance",
        &[
            "Alarm",
            "Status",
            "Defragment",
            "Hash",
            "HashKV",
            "Snapshot",
            "MoveLeader",
            "Downgrade",
        ],
    ),
    (
        "etcdserverpb",
        "Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
    ("v3lockpb", "Lock", &["Lock", "Unlock"]),
    (
        "v3electionpb",
        "Election",
        &["Campaign", "Proclaim", "Leader", "Observe", "Resign"],
    ),
];

/// A gRPC transport that records request paths and fails every call.
#[derive(Clone, Default)]
struct Recorder {
    paths: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.paths.lock().expect("recorder lock"))
    }
}

impl Service<http::Request<Body>> for Recorder {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.paths
            .lock()
            .expect("recorder lock")
            .push(req.uri().path().to_owned());
        // A trailers-only gRPC response carrying UNIMPLEMENTED (12).
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "12")
            .header("grpc-message", "recorded")
            .body(Body::empty())
            .expect("valid response");
        ready(Ok(resp))
    }
}

/// Calls one client method; `$resp` is the declared response type, so a
/// wrong streaming shape does not compile.
macro_rules! call {
    ($client:expr, $method:ident, $req:expr, $resp:ty) => {{
        let result: Result<tonic::Response<$resp>, tonic::Status> = $client.$method($req).await;
        let status = result.expect_err("the recorder fails every call");
        assert_eq!(
            status.code(),
            Code::Unimplemented,
            "{}",
            stringify!($method)
        );
        assert_eq!(status.message(), "recorded", "{}", stringify!($method));
    }};
}

fn stream_of<T: Send + 'static>() -> tokio_stream::Iter<std::vec::IntoIter<T>> {
    tokio_stream::iter(Vec::new())
}

/// Invokes every generated client method once and returns the recorded
/// paths per (package, service).
async fn record_all_paths() -> Vec<(String, Vec<String>)> {
    let rec = Recorder::default();
    let mut out = Vec::new();

    let mut kv = KvClient::new(rec.clone());
    call!(kv, range, pb::RangeRequest::default(), pb::RangeResponse);
    call!(kv, put, pb::PutRequest::default(), pb::PutResponse);
    call!(
        kv,
        delete_range,
        pb::DeleteRangeRequest::default(),
        pb::DeleteRangeResponse
    );
    call!(kv, txn, pb::TxnRequest::default(), pb::TxnResponse);
    call!(
        kv,
        compact,
        pb::CompactionRequest::default(),
        pb::CompactionResponse
    );
    out.push(("etcdserverpb.KV".to_owned(), rec.take()));

    let mut watch = WatchClient::new(rec.clone());
    call!(
        watch,
        watch,
        stream_of::<pb::WatchRequest>(),
        Streaming<pb::WatchResponse>
    );
    out.push(("etcdserverpb.Watch".to_owned(), rec.take()));

    let mut lease = LeaseClient::new(rec.clone());
    call!(
        lease,
        lease_grant,
        pb::LeaseGrantRequest::default(),
        pb::LeaseGrantResponse
    );
    call!(
        lease,
        lease_revoke,
        pb::LeaseRevokeRequest::default(),
        pb::LeaseRevokeResponse
    );
    call!(
        lease,
        lease_keep_alive,
        stream_of::<pb::LeaseKeepAliveRequest>(),
        Streaming<pb::LeaseKeepAliveResponse>
    );
    call!(
        lease,
        lease_time_to_live,
        pb::LeaseTimeToLiveRequest::default(),
        pb::LeaseTimeToLiveResponse
    );
    call!(
        lease,
        lease_leases,
        pb::LeaseLeasesRequest::default(),
        pb::LeaseLeasesResponse
    );
    out.push(("etcdserverpb.Lease".to_owned(), rec.take()));

    let mut cluster = ClusterClient::new(rec.clone());
    call!(
        cluster,
        member_add,
        pb::MemberAddRequest::default(),
        pb::MemberAddResponse
    );
    call!(
        cluster,
        member_remove,
        pb::MemberRemoveRequest::default(),
        pb::MemberRemoveResponse
    );
    call!(
        cluster,
        member_update,
        pb::MemberUpdateRequest::default(),
        pb::MemberUpdateResponse
    );
    call!(
        cluster,
        member_list,
        pb::MemberListRequest::default(),
        pb::MemberListResponse
    );
    call!(
        cluster,
        member_promote,
        pb::MemberPromoteRequest::default(),
        pb::MemberPromoteResponse
    );
    out.push(("etcdserverpb.Cluster".to_owned(), rec.take()));

    let mut m = MaintenanceClient::new(rec.clone());
    call!(m, alarm, pb::AlarmRequest::default(), pb::AlarmResponse);
    call!(m, status, pb::StatusRequest::default(), pb::StatusResponse);
    call!(
        m,
        defragment,
        pb::DefragmentRequest::default(),
        pb::DefragmentResponse
    );
    call!(m, hash, pb::HashRequest::default(), pb::HashResponse);
    call!(m, hash_kv, pb::HashKvRequest::default(), pb::HashKvResponse);
    call!(
        m,
        snapshot,
        pb::SnapshotRequest::default(),
        Streaming<pb::SnapshotResponse>
    );
    call!(
        m,
        move_leader,
        pb::MoveLeaderRequest::default(),
        pb::MoveLeaderResponse
    );
    call!(
        m,
        downgrade,
        pb::DowngradeRequest::default(),
        pb::DowngradeResponse
    );
    out.push(("etcdserverpb.Maintenance".to_owned(), rec.take()));

    let mut a = AuthClient::new(rec.clone());
    call!(
        a,
        auth_enable,
        pb::AuthEnableRequest::default(),
        pb::AuthEnableResponse
    );
    call!(
        a,
        auth_disable,
        pb::AuthDisableRequest::default(),
        pb::AuthDisableResponse
    );
    call!(
        a,
        auth_status,
        pb::AuthStatusRequest::default(),
        pb::AuthStatusResponse
    );
    call!(
        a,
        authenticate,
        pb::AuthenticateRequest::default(),
        pb::AuthenticateResponse
    );
    call!(
        a,
        user_add,
        pb::AuthUserAddRequest::default(),
        pb::AuthUserAddResponse
    );
    call!(
        a,
        user_get,
        pb::AuthUserGetRequest::default(),
        pb::AuthUserGetResponse
    );
    call!(
        a,
        user_list,
        pb::AuthUserListRequest::default(),
        pb::AuthUserListResponse
    );
    call!(
        a,
        user_delete,
        pb::AuthUserDeleteRequest::default(),
        pb::AuthUserDeleteResponse
    );
    call!(
        a,
        user_change_password,
        pb::AuthUserChangePasswordRequest::default(),
        pb::AuthUserChangePasswordResponse
    );
    call!(
        a,
        user_grant_role,
        pb::AuthUserGrantRoleRequest::default(),
        pb::AuthUserGrantRoleResponse
    );
    call!(
        a,
        user_revoke_role,
        pb::AuthUserRevokeRoleRequest::default(),
        pb::AuthUserRevokeRoleResponse
    );
    call!(
        a,
        role_add,
        pb::AuthRoleAddRequest::default(),
        pb::AuthRoleAddResponse
    );
    call!(
        a,
        role_get,
        pb::AuthRoleGetRequest::default(),
        pb::AuthRoleGetResponse
    );
    call!(
        a,
        role_list,
        pb::AuthRoleListRequest::default(),
        pb::AuthRoleListResponse
    );
    call!(
        a,
        role_delete,
        pb::AuthRoleDeleteRequest::default(),
        pb::AuthRoleDeleteResponse
    );
    call!(
        a,
        role_grant_permission,
        pb::AuthRoleGrantPermissionRequest::default(),
        pb::AuthRoleGrantPermissionResponse
    );
    call!(
        a,
        role_revoke_permission,
        pb::AuthRoleRevokePermissionRequest::default(),
        pb::AuthRoleRevokePermissionResponse
    );
    out.push(("etcdserverpb.Auth".to_owned(), rec.take()));

    let mut lock = LockClient::new(rec.clone());
    call!(lock, lock, lpb::LockRequest::default(), lpb::LockResponse);
    call!(
        lock,
        unlock,
        lpb::UnlockRequest::default(),
        lpb::UnlockResponse
    );
    out.push(("v3lockpb.Lock".to_owned(), rec.take()));

    let mut e = ElectionClient::new(rec.clone());
    call!(
        e,
        campaign,
        epb::CampaignRequest::default(),
        epb::CampaignResponse
    );
    call!(
        e,
        proclaim,
        epb::ProclaimRequest::default(),
        epb::ProclaimResponse
    );
    call!(
        e,
        leader,
        epb::LeaderRequest::default(),
        epb::LeaderResponse
    );
    call!(
        e,
        observe,
        epb::LeaderRequest::default(),
        Streaming<epb::LeaderResponse>
    );
    call!(
        e,
        resign,
        epb::ResignRequest::default(),
        epb::ResignResponse
    );
    out.push(("v3electionpb.Election".to_owned(), rec.take()));

    out
}

#[tokio::test]
async fn every_method_path_matches_etcd() {
    let recorded = record_all_paths().await;
    let expected: Vec<(String, Vec<String>)> = ETCD_SERVICES
        .iter()
        .map(|(pkg, svc, methods)| {
            let full = format!("{pkg}.{svc}");
            let paths = methods.iter().map(|m| format!("/{full}/{m}")).collect();
            (full, paths)
        })
        .collect();
    assert_eq!(recorded, expected);

    let total: usize = recorded.iter().map(|(_, p)| p.len()).sum();
    assert_eq!(
        total, 48,
        "etcd v3.5 exposes 48 client RPCs across these 8 services"
    );
}

#[tokio::test]
async fn spot_check_well_known_paths() {
    let recorded = record_all_paths().await;
    let all: Vec<&str> = recorded
        .iter()
        .flat_map(|(_, p)| p.iter().map(String::as_str))
        .collect();
    for path in [
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Watch/Watch",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Maintenance/HashKV",
        "/etcdserverpb.Maintenance/Snapshot",
        "/etcdserverpb.Auth/UserChangePassword",
        "/v3lockpb.Lock/Lock",
        "/v3electionpb.Election/Campaign",
        "/v3electionpb.Election/Observe",
    ] {
        assert!(all.contains(&path), "missing {path}");
    }
}

#[test]
fn server_service_names_match_etcd() {
    use mnemo_proto::etcdserverpb::{
        auth_server, cluster_server, kv_server, lease_server, maintenance_server, watch_server,
    };
    use mnemo_proto::{v3electionpb::election_server, v3lockpb::lock_server};
    let names = [
        kv_server::SERVICE_NAME,
        watch_server::SERVICE_NAME,
        lease_server::SERVICE_NAME,
        cluster_server::SERVICE_NAME,
        maintenance_server::SERVICE_NAME,
        auth_server::SERVICE_NAME,
        lock_server::SERVICE_NAME,
        election_server::SERVICE_NAME,
    ];
    let expected: Vec<String> = ETCD_SERVICES
        .iter()
        .map(|(pkg, svc, _)| format!("{pkg}.{svc}"))
        .collect();
    assert_eq!(names.to_vec(), expected);
}
