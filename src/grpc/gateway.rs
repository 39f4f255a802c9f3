//! etcd's JSON gateway on the client port: `POST /v3/<service>/<method>` with a JSON
//! body runs the gRPC method and answers JSON, as etcd 3.4's grpc-gateway (v1.9) does.
//! The same routes are served under `/v3beta/`.
//!
//! - Messages map as grpc-gateway's `JSONPb{OrigName: true}` maps them (see the serde
//!   impls of `mnemo-proto`). An empty body is the empty request; whatever follows the
//!   first JSON value is ignored (Go's `json.Decoder` decodes one value).
//! - The calls go to the same service structs that serve gRPC, in process, with the
//!   caller's token in the metadata key `token`: from `Grpc-Metadata-Token`, else from
//!   `Authorization` (etcd reads both), and with the request's extensions, so auth
//!   works unchanged. As in etcd, a client certificate with a CN is refused while
//!   `--client-cert-auth` and auth are on (see [`Gateway::refuses_common_name`]).
//! - A gRPC error answers with the HTTP status grpc-gateway maps its code to and the
//!   body `{"error":msg,"message":msg,"code":n}`; a body that is not a request (bad
//!   JSON, bad base64, a string where a number belongs) is InvalidArgument.
//! - Streaming responses (watch, lease keep-alive, snapshot, election observe) are
//!   newline-delimited `{"result":{…}}` objects, chunked; an error ends the stream with
//!   `{"error":{"grpc_code":n,"http_code":h,"message":msg,"http_status":text}}`. The
//!   status line waits for the first message (200), or carries the error's status if
//!   the call fails first. Streaming requests (watch, keep-alive) are a sequence of JSON
//!   values in the body, read as they arrive; the end of the body half-closes the call.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Router;
use futures_util::{Stream, StreamExt};
use mnemo_proto::etcdserverpb::auth_server::Auth;
use mnemo_proto::etcdserverpb::cluster_server::Cluster;
use mnemo_proto::etcdserverpb::kv_server::Kv;
use mnemo_proto::etcdserverpb::lease_server::Lease;
use mnemo_proto::etcdserverpb::maintenance_server::Maintenance;
use mnemo_proto::etcdserverpb::watch_server::Watch;
use mnemo_proto::v3electionpb::election_server::Election;
use mnemo_proto::v3lockpb::lock_server::Lock;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, ProstCodec, Streaming};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::{auth, cluster, election, kv, lease, lock, maintenance, watch, GRPC_OVERHEAD_BYTES};
use crate::server::EtcdServer;
use crate::tls::TlsConnInfo;

/// The path prefixes the gateway serves: etcd 3.4's, and the `v3beta` it kept from 3.3.
pub const PREFIXES: &[&str] = &["/v3", "/v3beta"];

/// Whether `path` is under one of the gateway's prefixes.
pub fn is_gateway_path(path: &str) -> bool {
    PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

const JSON: &str = "application/json";

/// The services the gateway calls, the same structs `router()` serves over gRPC.
#[derive(Debug, Clone)]
struct Gateway {
    server: Arc<EtcdServer>,
    kv: kv::KvService,
    watch: watch::WatchService,
    lease: lease::LeaseService,
    cluster: cluster::ClusterService,
    maintenance: maintenance::MaintenanceService,
    auth: auth::AuthService,
    lock: lock::LockService,
    election: election::ElectionService,
    /// The largest body read: JSON and base64 make a request up to about twice its
    /// protobuf size; the server checks `--max-request-bytes` itself after decoding.
    max_body: usize,
}

/// The route of one method: `call!(unary, kv.range)` runs `g.kv.range` through the
/// handler for its call type (`unary`, `server_stream` or `bidi_stream`).
macro_rules! call {
    ($kind:ident, $svc:ident . $method:ident) => {
        route(post(
            |State(g): State<Arc<Gateway>>, req: Request<Body>| async move {
                let svc = g.$svc.clone();
                $kind(&g, req, move |r| async move { svc.$method(r).await }).await
            },
        ))
    };
}

/// The gateway's routes under every prefix, ready to merge with the other routes.
pub fn routes(server: Arc<EtcdServer>, watch: watch::WatchService) -> Router {
    let max_body = server
        .options
        .max_request_bytes
        .saturating_mul(2)
        .saturating_add(GRPC_OVERHEAD_BYTES);
    let gateway = Arc::new(Gateway {
        server: server.clone(),
        kv: kv::KvService {
            server: server.clone(),
        },
        watch,
        lease: lease::LeaseService {
            server: server.clone(),
        },
        cluster: cluster::ClusterService {
            server: server.clone(),
        },
        maintenance: maintenance::MaintenanceService {
            server: server.clone(),
        },
        auth: auth::AuthService {
            server: server.clone(),
        },
        lock: lock::LockService {
            server: server.clone(),
        },
        election: election::ElectionService { server },
        max_body,
    });
    // etcd 3.4's `google.api.http` paths (api/etcdserverpb/rpc.proto, v3lock.proto,
    // v3election.proto), plus 3.5's `/v3/auth/status` and `/v3/maintenance/hashkv`.
    let methods: Router<Arc<Gateway>> = Router::new()
        .route("/kv/range", call!(unary, kv.range))
        .route("/kv/put", call!(unary, kv.put))
        .route("/kv/deleterange", call!(unary, kv.delete_range))
        .route("/kv/txn", call!(unary, kv.txn))
        .route("/kv/compaction", call!(unary, kv.compact))
        .route("/watch", call!(bidi_stream, watch.watch))
        .route("/lease/grant", call!(unary, lease.lease_grant))
        .route("/lease/revoke", call!(unary, lease.lease_revoke))
        .route("/kv/lease/revoke", call!(unary, lease.lease_revoke))
        .route(
            "/lease/keepalive",
            call!(bidi_stream, lease.lease_keep_alive),
        )
        .route("/lease/timetolive", call!(unary, lease.lease_time_to_live))
        .route(
            "/kv/lease/timetolive",
            call!(unary, lease.lease_time_to_live),
        )
        .route("/lease/leases", call!(unary, lease.lease_leases))
        .route("/kv/lease/leases", call!(unary, lease.lease_leases))
        .route("/cluster/member/add", call!(unary, cluster.member_add))
        .route(
            "/cluster/member/remove",
            call!(unary, cluster.member_remove),
        )
        .route(
            "/cluster/member/update",
            call!(unary, cluster.member_update),
        )
        .route("/cluster/member/list", call!(unary, cluster.member_list))
        .route(
            "/cluster/member/promote",
            call!(unary, cluster.member_promote),
        )
        .route("/maintenance/alarm", call!(unary, maintenance.alarm))
        .route("/maintenance/status", call!(unary, maintenance.status))
        .route(
            "/maintenance/defragment",
            call!(unary, maintenance.defragment),
        )
        // etcd 3.4 binds both Hash and HashKV to `/v3/maintenance/hash`; grpc-gateway
        // v1 runs the one registered first, Hash. 3.5 moved HashKV to `/hashkv`.
        .route("/maintenance/hash", call!(unary, maintenance.hash))
        .route("/maintenance/hashkv", call!(unary, maintenance.hash_kv))
        .route(
            "/maintenance/snapshot",
            call!(server_stream, maintenance.snapshot),
        )
        .route(
            "/maintenance/transfer-leadership",
            call!(unary, maintenance.move_leader),
        )
        .route("/auth/enable", call!(unary, auth.auth_enable))
        .route("/auth/disable", call!(unary, auth.auth_disable))
        .route("/auth/status", call!(unary, auth.auth_status))
        .route("/auth/authenticate", call!(unary, auth.authenticate))
        .route("/auth/user/add", call!(unary, auth.user_add))
        .route("/auth/user/get", call!(unary, auth.user_get))
        .route("/auth/user/list", call!(unary, auth.user_list))
        .route("/auth/user/delete", call!(unary, auth.user_delete))
        .route(
            "/auth/user/changepw",
            call!(unary, auth.user_change_password),
        )
        .route("/auth/user/grant", call!(unary, auth.user_grant_role))
        .route("/auth/user/revoke", call!(unary, auth.user_revoke_role))
        .route("/auth/role/add", call!(unary, auth.role_add))
        .route("/auth/role/get", call!(unary, auth.role_get))
        .route("/auth/role/list", call!(unary, auth.role_list))
        .route("/auth/role/delete", call!(unary, auth.role_delete))
        .route("/auth/role/grant", call!(unary, auth.role_grant_permission))
        .route(
            "/auth/role/revoke",
            call!(unary, auth.role_revoke_permission),
        )
        .route("/lock/lock", call!(unary, lock.lock))
        .route("/lock/unlock", call!(unary, lock.unlock))
        .route("/election/campaign", call!(unary, election.campaign))
        .route("/election/proclaim", call!(unary, election.proclaim))
        .route("/election/leader", call!(unary, election.leader))
        .route("/election/observe", call!(server_stream, election.observe))
        .route("/election/resign", call!(unary, election.resign));
    let mut router = Router::new();
    for prefix in PREFIXES {
        router = router.nest(prefix, methods.clone());
    }
    router.with_state(gateway)
}

impl Gateway {
    /// etcd's refusal of a client certificate with a CN while `--client-cert-auth` and
    /// auth are on (embed/serve.go): its gateway calls gRPC over a connection of its
    /// own, where the CN would not count, so it refuses rather than ignore it. The
    /// calls here would keep it; mnemo refuses all the same, as etcd clients expect.
    fn refuses_common_name(&self, parts: &Parts) -> bool {
        if !self.server.options.client_cert_auth || !self.server.store.auth().enabled {
            return false;
        }
        parts
            .extensions
            .get::<TlsConnInfo>()
            .and_then(|info| info.common_name.as_deref())
            .is_some_and(|cn| !cn.is_empty())
    }
}

/// etcd's answer to a request [`Gateway::refuses_common_name`] refuses, given once the
/// body is read: an HTTP/2 stream answered before its request body has ended is reset,
/// and clients (curl) then report the reset instead of the answer. At most `limit`
/// bytes and one second are spent on the body.
async fn common_name_refused(body: Body, limit: usize) -> Response {
    let mut stream = body.into_data_stream();
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > limit {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    go_http_error(
        StatusCode::BAD_REQUEST,
        "CommonName of client sending a request against gateway will be ignored and not used as expected\n",
    )
}

/// A POST route that answers other methods as grpc-gateway does.
fn route(method: MethodRouter<Arc<Gateway>>) -> MethodRouter<Arc<Gateway>> {
    method.fallback(method_not_allowed)
}

async fn method_not_allowed() -> Response {
    go_http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// What an unknown path under the gateway's prefixes gets: grpc-gateway's 404.
pub fn not_found() -> Response {
    go_http_error(StatusCode::NOT_FOUND, "Not Found\n")
}

/// Go's `http.Error`.
fn go_http_error(status: StatusCode, body: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    (status, headers, body).into_response()
}

async fn unary<Req, Resp, F, Fut>(g: &Gateway, req: Request<Body>, call: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let (parts, body) = req.into_parts();
    if g.refuses_common_name(&parts) {
        return common_name_refused(body, g.max_body).await;
    }
    let msg = match read_request::<Req>(body, g.max_body).await {
        Ok(msg) => msg,
        Err(resp) => return *resp,
    };
    match call(grpc_request(parts, msg)).await {
        Ok(resp) => match serde_json::to_vec(resp.get_ref()) {
            Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], body).into_response(),
            Err(e) => error_response(&Status::internal(e.to_string())),
        },
        Err(status) => error_response(&status),
    }
}

async fn server_stream<Req, Resp, S, F, Fut>(g: &Gateway, req: Request<Body>, call: F) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + Unpin + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let (parts, body) = req.into_parts();
    if g.refuses_common_name(&parts) {
        return common_name_refused(body, g.max_body).await;
    }
    let msg = match read_request::<Req>(body, g.max_body).await {
        Ok(msg) => msg,
        Err(resp) => return *resp,
    };
    stream_response(call(grpc_request(parts, msg)).await).await
}

async fn bidi_stream<Req, Resp, S, F, Fut>(g: &Gateway, req: Request<Body>, call: F) -> Response
where
    Req: DeserializeOwned + prost::Message + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + Unpin + 'static,
    F: FnOnce(tonic::Request<Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let (parts, body) = req.into_parts();
    if g.refuses_common_name(&parts) {
        return common_name_refused(body, g.max_body).await;
    }
    let mut reader = JsonReader::new(body.into_data_stream(), g.max_body);
    // grpc-gateway reads the first request before it answers; a bad one fails the call
    // (with Unknown: its streaming handlers do not wrap decoding errors).
    let first = match reader.next::<Req>().await {
        Ok(first) => first,
        Err(e) => return error_response(&Status::unknown(e)),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(4);
    if let Some(first) = first {
        // The channel is empty: this cannot wait.
        let _ = tx.try_send(Ok(grpc_frame(&first)));
        tokio::spawn(async move {
            // A later bad value ends the requests (half-close), as in grpc-gateway.
            while let Ok(Some(msg)) = reader.next::<Req>().await {
                if tx.send(Ok(grpc_frame(&msg))).await.is_err() {
                    return;
                }
            }
        });
    }
    let input = Streaming::new_request(
        ProstCodec::<Req, Req>::default().decoder(),
        Body::from_stream(ReceiverStream::new(rx)),
        None,
        None,
    );
    stream_response(call(grpc_request(parts, input)).await).await
}

/// The request message of a unary or server-streaming call: the body's first JSON value,
/// or the default message for an empty body.
async fn read_request<Req: DeserializeOwned + Default>(
    body: Body,
    limit: usize,
) -> Result<Req, Box<Response>> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Box::new(error_response(&Status::unknown(e.to_string()))))?;
        if buf.len() + chunk.len() > limit {
            return Err(Box::new(too_large(limit)));
        }
        buf.extend_from_slice(&chunk);
    }
    let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<Req>();
    match values.next() {
        None => Ok(Req::default()),
        Some(Ok(msg)) => Ok(msg),
        Some(Err(e)) => Err(Box::new(error_response(&Status::invalid_argument(
            e.to_string(),
        )))),
    }
}

fn too_large(limit: usize) -> Response {
    let status = Status::resource_exhausted(format!(
        "request body larger than {limit} bytes (twice --max-request-bytes plus {GRPC_OVERHEAD_BYTES})"
    ));
    let mut resp = error_response(&status);
    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    resp
}

/// Reads a body as a sequence of JSON values, each as soon as it is complete.
struct JsonReader {
    stream: BodyDataStream,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    pos: usize,
    /// The body has ended.
    done: bool,
    /// The most bytes held for one value.
    limit: usize,
    /// The last parse found an incomplete value and no `}` has come since: parsing again
    /// cannot succeed (a request is an object), so a value sent in many small pieces is
    /// not parsed once per piece.
    incomplete: bool,
}

impl JsonReader {
    fn new(stream: BodyDataStream, limit: usize) -> JsonReader {
        JsonReader {
            stream,
            buf: Vec::new(),
            pos: 0,
            done: false,
            limit,
            incomplete: false,
        }
    }

    /// The next value; `None` at the end of the body.
    async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, String> {
        loop {
            let rest = &self.buf[self.pos..];
            if self.incomplete && !self.done {
                // Wait for more.
            } else if let Some(start) = rest.iter().position(|b| !b.is_ascii_whitespace()) {
                let mut values = serde_json::Deserializer::from_slice(&rest[start..]).into_iter();
                match values.next() {
                    Some(Ok(value)) => {
                        self.pos += start + values.byte_offset();
                        return Ok(Some(value));
                    }
                    // An incomplete value waits for more of the body, unless the body has ended.
                    Some(Err(e)) if !e.is_eof() || self.done => return Err(e.to_string()),
                    _ => self.incomplete = true,
                }
            } else if self.done {
                return Ok(None);
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => {
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                    if self.buf.len() + chunk.len() > self.limit {
                        return Err(format!(
                            "request larger than {} bytes in the body",
                            self.limit
                        ));
                    }
                    self.buf.extend_from_slice(&chunk);
                    if chunk.contains(&b'}') {
                        self.incomplete = false;
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => self.done = true,
            }
        }
    }
}

/// A message as one gRPC frame: uncompressed flag, big-endian length, protobuf.
fn grpc_frame<M: prost::Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    msg.encode_raw(&mut frame);
    Bytes::from(frame)
}

/// The gRPC request for the service: the HTTP request's headers as metadata, its
/// extensions, and the caller's token under `token`.
fn grpc_request<T>(parts: Parts, msg: T) -> tonic::Request<T> {
    let token = ["grpc-metadata-token", "authorization"]
        .iter()
        .find_map(|name| parts.headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| MetadataValue::try_from(v).ok());
    let mut req = tonic::Request::from_http(Request::from_parts(parts, msg));
    // Only what grpc-gateway forwards as `token` counts, not a header of that name.
    req.metadata_mut().remove("token");
    if let Some(token) = token {
        req.metadata_mut().insert("token", token);
    }
    req
}

/// A streaming call's answer: waits for the first message (or error) to pick the status.
async fn stream_response<S, T>(result: Result<tonic::Response<S>, Status>) -> Response
where
    S: Stream<Item = Result<T, Status>> + Send + Unpin + 'static,
    T: Serialize + Send + 'static,
{
    let mut stream = match result {
        Ok(resp) => resp.into_inner(),
        Err(status) => return stream_error_response(&status),
    };
    let first = match stream.next().await {
        None => return (StatusCode::OK, [(header::CONTENT_TYPE, JSON)]).into_response(),
        Some(Err(status)) => return stream_error_response(&status),
        Some(Ok(first)) => first,
    };
    let first =
        futures_util::stream::once(async move { Ok::<_, Infallible>(result_chunk(&first)) });
    let rest = futures_util::stream::unfold(Some(stream), |stream| async move {
        let mut stream = stream?;
        match stream.next().await {
            None => None,
            Some(Ok(msg)) => Some((Ok(result_chunk(&msg)), Some(stream))),
            Some(Err(status)) => Some((Ok(Bytes::from(stream_error_chunk(&status))), None)),
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, JSON)],
        Body::from_stream(first.chain(rest)),
    )
        .into_response()
}

/// `{"result":<message>}` and the newline grpc-gateway writes after each.
fn result_chunk<T: Serialize>(msg: &T) -> Bytes {
    let mut out = br#"{"result":"#.to_vec();
    match serde_json::to_writer(&mut out, msg) {
        Ok(()) => {
            out.extend_from_slice(b"}\n");
            Bytes::from(out)
        }
        Err(e) => Bytes::from(stream_error_chunk(&Status::internal(e.to_string()))),
    }
}

fn stream_error_response(status: &Status) -> Response {
    (
        http_status(status.code()),
        [(header::CONTENT_TYPE, JSON)],
        stream_error_chunk(status),
    )
        .into_response()
}

/// grpc-gateway v1's stream error: `{"error":{"grpc_code":…,"http_code":…,
/// "message":…,"http_status":…}}` (zero values omitted, as JSONPb does).
pub fn stream_error_chunk(status: &Status) -> String {
    let http = http_status(status.code());
    let mut fields = Vec::new();
    if status.code() != Code::Ok {
        fields.push(format!(r#""grpc_code":{}"#, status.code() as i32));
    }
    fields.push(format!(r#""http_code":{}"#, http.as_u16()));
    if !status.message().is_empty() {
        fields.push(format!(r#""message":{}"#, json_string(status.message())));
    }
    if let Some(reason) = http.canonical_reason() {
        fields.push(format!(r#""http_status":{}"#, json_string(reason)));
    }
    format!(r#"{{"error":{{{}}}}}"#, fields.join(","))
}

/// grpc-gateway v1's answer to a failed call: the mapped status and
/// `{"error":msg,"message":msg,"code":n}` (zero values omitted, as JSONPb does).
pub fn error_response(status: &Status) -> Response {
    (
        http_status(status.code()),
        [(header::CONTENT_TYPE, JSON)],
        error_body(status),
    )
        .into_response()
}

/// The body of [`error_response`], keys in the order etcd 3.4 writes them.
pub fn error_body(status: &Status) -> String {
    let message = json_string(status.message());
    let mut fields = Vec::new();
    if !status.message().is_empty() {
        fields.push(format!(r#""error":{message}"#));
        fields.push(format!(r#""message":{message}"#));
    }
    if status.code() != Code::Ok {
        fields.push(format!(r#""code":{}"#, status.code() as i32));
    }
    format!("{{{}}}", fields.join(","))
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // Deliberately not 412, as in grpc-gateway.
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_grpc_gateways_http_statuses() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 408),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn error_bodies_are_grpc_gateways() {
        let s = Status::invalid_argument("etcdserver: key is not provided");
        assert_eq!(
            error_body(&s),
            r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
        );
        let s = Status::unauthenticated("say \"hi\"");
        assert_eq!(
            error_body(&s),
            r#"{"error":"say \"hi\"","message":"say \"hi\"","code":16}"#
        );
        assert_eq!(error_body(&Status::unimplemented("")), r#"{"code":12}"#);
        let resp = error_response(&Status::permission_denied("no"));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(JSON)
        );
        assert_eq!(
            stream_error_chunk(&Status::unauthenticated("etcdserver: invalid auth token")),
            r#"{"error":{"grpc_code":16,"http_code":401,"message":"etcdserver: invalid auth token","http_status":"Unauthorized"}}"#
        );
    }

    #[test]
    fn gateway_paths() {
        assert!(is_gateway_path("/v3/kv/range"));
        assert!(is_gateway_path("/v3beta/nothing"));
        assert!(is_gateway_path("/v3"));
        assert!(!is_gateway_path("/v3alpha/kv/range"));
        assert!(!is_gateway_path("/v30/kv/range"));
        assert!(!is_gateway_path("/health"));
    }

    #[test]
    fn frames_are_grpcs() {
        let msg = mnemo_proto::etcdserverpb::LeaseKeepAliveRequest { id: 1 };
        assert_eq!(&grpc_frame(&msg)[..], &[0, 0, 0, 0, 2, 8, 1]);
    }

    #[tokio::test]
    async fn json_values_are_read_as_they_complete() {
        use mnemo_proto::etcdserverpb::LeaseKeepAliveRequest as Ka;
        let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(8);
        let body = Body::from_stream(ReceiverStream::new(rx));
        let mut reader = JsonReader::new(body.into_data_stream(), 1024);
        for part in [
            &b"{\"ID\":"[..],
            b"\"1\"}\n{\"ID\"",
            b":2} ",
            b" {\"ID\":3}",
        ] {
            tx.send(Ok(Bytes::from_static(part)))
                .await
                .unwrap_or_default();
        }
        drop(tx);
        let mut ids = Vec::new();
        while let Ok(Some(ka)) = reader.next::<Ka>().await {
            ids.push(ka.id);
        }
        assert_eq!(ids, [1, 2, 3]);

        let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(8);
        let body = Body::from_stream(ReceiverStream::new(rx));
        let mut reader = JsonReader::new(body.into_data_stream(), 1024);
        tx.send(Ok(Bytes::from_static(b"{\"ID\":1} {\"ID\":")))
            .await
            .unwrap_or_default();
        drop(tx);
        assert!(matches!(reader.next::<Ka>().await, Ok(Some(Ka { id: 1 }))));
        assert!(reader.next::<Ka>().await.is_err());
    }
}
