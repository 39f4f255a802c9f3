//! The HTTP endpoints etcd serves on its client port beside gRPC: `/health`, `/livez`,
//! `/readyz`, `/version` and `/metrics`. Anything else that is not gRPC gets 404 (the
//! JSON gateway's own 404 under `/v3/`, see [`super::gateway`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::{EtcdServer, ETCD_CLUSTER_VERSION, ETCD_VERSION};

/// Content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The HTTP routes, ready to merge with the gRPC services' router.
pub fn routes(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// What answers a path no route takes: gRPC's "unimplemented" for a gRPC request (as
/// tonic answers an unknown service), else etcd's plain 404.
pub async fn fallback(req: Request<Body>) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("").into_http::<Body>();
    }
    if super::gateway::is_gateway_path(req.uri().path()) {
        return super::gateway::not_found();
    }
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body).into_response()
}

/// etcd 3.4's `/health`: `{"health":"true"}` with 200, or `{"health":"false"}` with 503
/// (and a newline, as Go's `http.Error` writes it). `?serializable=true` skips the
/// linearizable read.
async fn health(State(server): State<Arc<EtcdServer>>, uri: Uri) -> Response {
    let serializable = query_flag(&uri, "serializable");
    if server.healthy(serializable).await {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT)],
            r#"{"health":"true"}"#,
        )
            .into_response()
    } else {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        (
            StatusCode::SERVICE_UNAVAILABLE,
            headers,
            "{\"health\":\"false\"}\n",
        )
            .into_response()
    }
}

/// The process serves requests.
async fn livez() -> Response {
    text(StatusCode::OK, "ok")
}

/// The member can serve reads: the health check, serializable.
async fn readyz(State(server): State<Arc<EtcdServer>>) -> Response {
    if server.healthy(true).await {
        text(StatusCode::OK, "ok")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn version() -> Response {
    let body =
        format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{ETCD_CLUSTER_VERSION}"}}"#);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        server.metrics_text(),
    )
        .into_response()
}

/// Whether the query has `name=true` (Go's `strconv.ParseBool` spellings of true).
fn query_flag(uri: &Uri, name: &str) -> bool {
    uri.query().unwrap_or("").split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k == name && matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flags_parse_like_go() {
        let uri: Uri = "/health?serializable=true".parse().unwrap_or_default();
        assert!(query_flag(&uri, "serializable"));
        let uri: Uri = "/health?x=1&serializable=false".parse().unwrap_or_default();
        assert!(!query_flag(&uri, "serializable"));
        let uri: Uri = "/health".parse().unwrap_or_default();
        assert!(!query_flag(&uri, "serializable"));
    }
}
