//! `grpc_server_handled_total`: every gRPC call answered on the client port, by service,
//! method, call type and status code, with grpc-prometheus's names (which etcd uses).
//!
//! A middleware on the client router sees each request's path and wraps its response
//! body; the status is the `grpc-status` of the response headers (an error answered at
//! once) or of the trailers at the body's end. A body dropped before its end (a client
//! that cancelled a watch or a keep-alive stream) counts as `Canceled`.
//!
//! The methods and their call types are read from the `.proto` files mnemo serves, so
//! the table cannot drift from the services; calls to other paths are not counted.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// The `.proto` files whose services the client port serves.
const PROTOS: [&str; 3] = [
    include_str!("../../proto/proto/etcdserverpb/rpc.proto"),
    include_str!("../../proto/proto/v3lockpb/v3lock.proto"),
    include_str!("../../proto/proto/v3electionpb/v3election.proto"),
];

/// grpc.health.v1 (tonic-health's proto, not in mnemo's tree).
const HEALTH: [(&str, &str); 2] = [
    ("/grpc.health.v1.Health/Check", "unary"),
    ("/grpc.health.v1.Health/Watch", "server_stream"),
];

/// gRPC status codes by number, as grpc-go names them.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// One method: its labels and a counter per status code.
#[derive(Debug)]
struct Method {
    service: String,
    method: String,
    kind: &'static str,
    handled: [AtomicU64; CODES.len()],
}

/// The counters of every method, keyed by request path (`/etcdserverpb.KV/Range`).
#[derive(Debug)]
pub struct GrpcStats {
    methods: HashMap<String, Method>,
}

impl Default for GrpcStats {
    fn default() -> GrpcStats {
        let mut methods = HashMap::new();
        for proto in PROTOS {
            for (path, kind) in rpc_paths(proto) {
                methods.insert(path, kind);
            }
        }
        for (path, kind) in HEALTH {
            methods.insert(path.to_string(), kind);
        }
        let methods = methods
            .into_iter()
            .filter_map(|(path, kind)| {
                let (service, method) = path.strip_prefix('/')?.split_once('/')?;
                let m = Method {
                    service: service.to_string(),
                    method: method.to_string(),
                    kind,
                    handled: Default::default(),
                };
                Some((path, m))
            })
            .collect();
        GrpcStats { methods }
    }
}

/// `(path, call type)` of every rpc in a `.proto` file's services.
fn rpc_paths(proto: &str) -> Vec<(String, &'static str)> {
    let mut package = "";
    let mut service = "";
    let mut out = Vec::new();
    for line in proto.lines().map(str::trim) {
        if let Some(p) = line.strip_prefix("package ") {
            package = p.trim_end_matches(';').trim();
        } else if let Some(s) = line.strip_prefix("service ") {
            service = s.trim_end_matches('{').trim();
        } else if let Some(rpc) = line.strip_prefix("rpc ") {
            let Some((name, rest)) = rpc.split_once('(') else {
                continue;
            };
            let Some((request, response)) = rest.split_once("returns") else {
                continue;
            };
            let streams = |s: &str| s.trim_start_matches(['(', ' ']).starts_with("stream ");
            let kind = match (streams(request), streams(response)) {
                (false, false) => "unary",
                (true, false) => "client_stream",
                (false, true) => "server_stream",
                (true, true) => "bidi_stream",
            };
            out.push((format!("/{package}.{service}/{}", name.trim()), kind));
        }
    }
    out
}

impl GrpcStats {
    fn record(&self, path: &str, code: usize) {
        if let Some(m) = self.methods.get(path) {
            m.handled[code.min(CODES.len() - 1)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `grpc_server_handled_total` in Prometheus' text format; only series that are not
    /// zero (etcd lists every method with every code from the start).
    pub fn write_handled(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure."
        );
        let _ = writeln!(out, "# TYPE grpc_server_handled_total counter");
        let mut methods: Vec<&Method> = self.methods.values().collect();
        methods.sort_by(|a, b| (&a.service, &a.method).cmp(&(&b.service, &b.method)));
        for m in methods {
            for (code, n) in CODES.iter().zip(&m.handled) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{}\",grpc_service=\"{}\",grpc_type=\"{}\"}} {n}",
                        m.method, m.service, m.kind
                    );
                }
            }
        }
    }
}

/// The middleware (`from_fn_with_state` with the member's counters): counts gRPC calls
/// to known methods as their responses end.
pub async fn count_calls(
    State(stats): State<Arc<GrpcStats>>,
    req: Request,
    next: Next,
) -> Response {
    if !stats.methods.contains_key(req.uri().path()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    // An error answered without a body: the status is in the headers.
    if let Some(code) = status_of(resp.headers()) {
        stats.record(&path, code);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = Counted {
        inner: body,
        path: Some(path),
        stats,
    };
    Response::from_parts(parts, Body::new(body))
}

/// The `grpc-status` of a header map, as a code number (unknown values: Unknown).
fn status_of(headers: &axum::http::HeaderMap) -> Option<usize> {
    let v = headers.get("grpc-status")?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&c| c < CODES.len())
            .unwrap_or(UNKNOWN),
    )
}

/// A response body that records its call's status when the trailers pass (or when it is
/// dropped first).
struct Counted {
    inner: Body,
    /// Taken once the call is recorded.
    path: Option<String>,
    stats: Arc<GrpcStats>,
}

impl Counted {
    fn finish(&mut self, code: usize) {
        if let Some(path) = self.path.take() {
            self.stats.record(&path, code);
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(UNKNOWN),
            // Ended without a status: grpc-go would report Unknown.
            Poll::Ready(None) => self.finish(UNKNOWN),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_call_types_come_from_the_protos() {
        let s = GrpcStats::default();
        let kind = |p: &str| s.methods.get(p).map(|m| m.kind);
        assert_eq!(kind("/etcdserverpb.KV/Range"), Some("unary"));
        assert_eq!(kind("/etcdserverpb.Watch/Watch"), Some("bidi_stream"));
        assert_eq!(
            kind("/etcdserverpb.Lease/LeaseKeepAlive"),
            Some("bidi_stream")
        );
        assert_eq!(
            kind("/etcdserverpb.Maintenance/Snapshot"),
            Some("server_stream")
        );
        assert_eq!(kind("/v3lockpb.Lock/Lock"), Some("unary"));
        assert_eq!(
            kind("/v3electionpb.Election/Observe"),
            Some("server_stream")
        );
        assert_eq!(kind("/grpc.health.v1.Health/Check"), Some("unary"));
        assert_eq!(kind("/etcdserverpb.KV/Nope"), None);
        // KV 5, Watch 1, Lease 5, Cluster 5, Maintenance 8 (with Downgrade), Auth 17.
        let etcd = s
            .methods
            .values()
            .filter(|m| m.service.starts_with("etcdserverpb."))
            .count();
        assert_eq!(etcd, 41);
    }

    #[test]
    fn handled_lines_carry_grpc_prometheus_labels() {
        let s = GrpcStats::default();
        s.record("/etcdserverpb.KV/Put", 0);
        s.record("/etcdserverpb.KV/Put", 0);
        s.record("/etcdserverpb.KV/Put", 9);
        s.record("/not/served", 0);
        let mut out = String::new();
        s.write_handled(&mut out);
        let lines: Vec<&str> = out.lines().skip(2).collect();
        assert_eq!(
            lines,
            [
                "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 2",
                "grpc_server_handled_total{grpc_code=\"FailedPrecondition\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
            ]
        );
    }
}
