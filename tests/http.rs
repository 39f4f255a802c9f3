//! etcd's HTTP endpoints on the client port, beside gRPC on the same listener:
//! `/health`, `/livez`, `/readyz`, `/version`, `/metrics`; and grpc.health.v1.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{http_request, MemberAddrs, MnemoProcess};
use mnemo_proto::etcdserverpb::watch_request::RequestUnion;
use mnemo_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn health_version_livez_readyz_answer_like_etcd() {
    let m = MnemoProcess::start(&[]);
    let addr = m.client_addr();

    let r = http_request(addr, "GET", "/health");
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"health":"true"}"#));
    let r = http_request(addr, "GET", "/health?serializable=true");
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"health":"true"}"#));
    let r = http_request(addr, "POST", "/health");
    assert_eq!(r.status, 405);

    let r = http_request(addr, "GET", "/version");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, r#"{"etcdserver":"3.4.0","etcdcluster":"3.4.0"}"#);

    for path in ["/livez", "/readyz"] {
        let r = http_request(addr, "GET", path);
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{path}");
    }
    let r = http_request(addr, "GET", "/v2/keys");
    assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));

    // gRPC on the same port is unaffected, before and after.
    let mut kv = m.kv().await;
    kv.put(PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(http_request(addr, "GET", "/health").status, 200);
}

#[tokio::test]
async fn grpc_health_reports_serving_with_a_leader() {
    let m = MnemoProcess::start(&[]);
    let mut health = HealthClient::new(m.channel().await);
    let r = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, ServingStatus::Serving as i32);
    let e = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn a_grpc_call_to_an_unknown_service_is_unimplemented_not_404() {
    use mnemo_proto::etcdserverpb::{RangeRequest, RangeResponse};
    use tonic::codec::ProstCodec;
    use tonic::codegen::http::uri::PathAndQuery;

    let m = MnemoProcess::start(&[]);
    let mut grpc = tonic::client::Grpc::new(m.channel().await);
    grpc.ready().await.unwrap();
    let codec: ProstCodec<RangeRequest, RangeResponse> = ProstCodec::default();
    let e = grpc
        .unary(
            tonic::Request::new(RangeRequest::default()),
            PathAndQuery::from_static("/nosuch.v1.Nothing/Call"),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
}

#[tokio::test]
async fn health_is_503_while_the_nospace_alarm_is_raised() {
    let m = MnemoProcess::start(&["--quota-backend-bytes", "1048576"]);
    let mut kv = m.kv().await;
    let mut refused = false;
    for i in 0..400 {
        let r = kv
            .put(PutRequest {
                key: format!("q{i:04}").into(),
                value: vec![b'q'; 8000],
                ..Default::default()
            })
            .await;
        if r.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the quota was never reached");
    for path in ["/health", "/health?serializable=true"] {
        let r = http_request(m.client_addr(), "GET", path);
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "{\"health\":\"false\"}\n"),
            "{path}"
        );
    }
    assert_eq!(http_request(m.client_addr(), "GET", "/readyz").status, 503);
    let metrics = parse_metrics(&http_request(m.client_addr(), "GET", "/metrics").body);
    assert!(metrics["etcd_server_health_failures"] >= 2.0);
}

#[tokio::test]
async fn without_a_leader_health_is_503_and_grpc_health_not_serving() {
    // One member of three, the others never started: no quorum, no leader. The member
    // serves clients after waiting ten election timeouts for one.
    let addrs: Vec<MemberAddrs> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| MemberAddrs::new(n))
        .collect();
    let initial_cluster = addrs
        .iter()
        .map(|a| format!("{}={}", a.name, a.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let mut m = MnemoProcess::spawn_member(
        addrs[0].clone(),
        initial_cluster,
        &["--heartbeat-interval=20", "--election-timeout=100"],
        &[],
    );
    m.wait_ready();
    let addr = m.client_addr();
    for path in ["/health", "/health?serializable=true"] {
        let r = http_request(addr, "GET", path);
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "{\"health\":\"false\"}\n"),
            "{path}"
        );
    }
    assert_eq!(http_request(addr, "GET", "/readyz").status, 503);
    assert_eq!(http_request(addr, "GET", "/livez").status, 200);
    let metrics = parse_metrics(&http_request(addr, "GET", "/metrics").body);
    assert_eq!(metrics["etcd_server_has_leader"], 0.0);
    assert_eq!(metrics["etcd_server_is_leader"], 0.0);
    let mut health = HealthClient::new(m.channel().await);
    let r = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, ServingStatus::NotServing as i32);
}

/// Parses the text exposition format: every line is `# HELP`, `# TYPE` or a sample
/// `name{labels} value` whose family has a TYPE line before it. Returns each sample's
/// value by `name{labels}`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut typed = BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["gauge", "counter", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "{line:?}"
                    );
                }
            }
        }
        // A histogram's samples are its `_bucket`, `_sum` and `_count` series.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no TYPE line before it");
        samples.insert(series.to_string(), value.parse::<f64>().unwrap());
    }
    samples
}

#[tokio::test]
async fn metrics_use_etcds_names_and_the_text_format() {
    let m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    for i in 0..3 {
        kv.put(PutRequest {
            key: format!("m{i}").into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // An error (empty key) and a watch stream the client drops.
    kv.put(PutRequest::default()).await.unwrap_err();
    {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"m0".to_vec(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let mut w = m.watch().await;
        let mut stream = w
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        assert!(stream.message().await.unwrap().unwrap().created);
    }
    let r = http_request(m.client_addr(), "GET", "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let metrics = parse_metrics(&r.body);
    let value = |name: &str| {
        *metrics
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in\n{}", r.body))
    };
    assert_eq!(value("etcd_server_has_leader"), 1.0);
    assert_eq!(value("etcd_server_is_leader"), 1.0);
    assert!(value("etcd_server_leader_changes_seen_total") >= 1.0);
    let committed = value("etcd_server_proposals_committed_total");
    let applied = value("etcd_server_proposals_applied_total");
    assert!(committed >= 3.0 && applied >= 3.0 && applied <= committed);
    // Every put above was answered: none is still waiting for its entry.
    assert_eq!(value("etcd_server_proposals_pending"), 0.0);
    assert!(value("etcd_mvcc_db_total_size_in_bytes") > 0.0);
    assert!(
        value("etcd_mvcc_db_total_size_in_use_in_bytes")
            <= value("etcd_mvcc_db_total_size_in_bytes")
    );
    assert_eq!(value("etcd_debugging_mvcc_keys_total"), 3.0);
    // Pages freed by copy-on-write commits, counted by the same walk as the bytes in use.
    let free = value("mnemo_backend_free_pages");
    assert!(free >= 0.0 && free * 4096.0 <= value("etcd_mvcc_db_total_size_in_bytes"));
    assert_eq!(value("etcd_debugging_mvcc_current_revision"), 4.0);
    assert_eq!(value("etcd_server_quota_backend_bytes"), 2147483648.0);
    assert!([0.0, 1.0].contains(&value("mnemo_wal_io_uring")));
    assert!(value("mnemo_wal_fsyncs_total") >= 1.0);
    // This member is alone and its puts came one at a time: the raft task wrote them.
    assert!(value("mnemo_wal_inline_batches_total") >= 1.0);
    assert!(value("mnemo_wal_inline_batches_total") <= value("mnemo_wal_batches_total"));
    // Latency histograms: every WAL fdatasync and backend commit observed once, the
    // buckets cumulative up to +Inf.
    for h in [
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds",
    ] {
        let count = value(&format!("{h}_count"));
        assert!(count >= 3.0, "{h}_count {count}");
        assert_eq!(value(&format!("{h}_bucket{{le=\"+Inf\"}}")), count);
        assert!(
            value(&format!("{h}_bucket{{le=\"0.001\"}}"))
                <= value(&format!("{h}_bucket{{le=\"8.192\"}}"))
        );
        assert!(value(&format!("{h}_sum")) > 0.0);
    }
    assert!(value("etcd_disk_wal_fsync_duration_seconds_count") <= value("mnemo_wal_fsyncs_total"));
    let handled = |code: &str, service: &str, method: &str, kind: &str| {
        let series = format!(
            "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"}}"
        );
        metrics.get(&series).copied().unwrap_or(0.0)
    };
    assert_eq!(handled("OK", "etcdserverpb.KV", "Put", "unary"), 3.0);
    assert_eq!(
        handled("InvalidArgument", "etcdserverpb.KV", "Put", "unary"),
        1.0
    );
    // The dropped watch counts as Canceled once the server sees its stream reset.
    let canceled_watch = r#"grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = parse_metrics(&http_request(m.client_addr(), "GET", "/metrics").body);
        if now.get(canceled_watch) == Some(&1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped watch was not counted: {:?}",
            now.iter()
                .filter(|(k, _)| k.contains("Watch"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(value(r#"etcd_server_version{server_version="3.4.0"}"#), 1.0);
    assert_eq!(value(r#"etcd_cluster_version{cluster_version="3.4"}"#), 1.0);
    let id = metrics
        .keys()
        .find_map(|k| k.strip_prefix("etcd_server_id{server_id=\""))
        .and_then(|rest| rest.strip_suffix("\"}"))
        .expect("etcd_server_id");
    // The member id matches the one in response headers.
    let header = kv
        .range(mnemo_proto::etcdserverpb::RangeRequest {
            key: b"m0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap();
    assert_eq!(u64::from_str_radix(id, 16).unwrap(), header.member_id);
}

#[tokio::test]
async fn checkpoints_are_timed_in_their_own_histogram() {
    let m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    let h = "mnemo_backend_checkpoint_duration_seconds";
    // A checkpoint follows the first batch applied a second after the last one; keep
    // writing until one is counted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let metrics = loop {
        kv.put(PutRequest {
            key: b"c".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        let metrics = parse_metrics(&http_request(m.client_addr(), "GET", "/metrics").body);
        let count = metrics.get(&format!("{h}_count")).copied();
        assert!(count.is_some(), "no {h}_count in {metrics:?}");
        if count >= Some(1.0) {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let count = metrics[&format!("{h}_count")];
    assert_eq!(metrics[&format!("{h}_bucket{{le=\"+Inf\"}}")], count);
    assert!(metrics[&format!("{h}_sum")] > 0.0);
    // Apply commits stay in etcd's backend histogram, counted apart.
    assert!(metrics["etcd_disk_backend_commit_duration_seconds_count"] >= count);
}

#[tokio::test]
async fn pages_of_commits_since_the_last_checkpoint_are_held_in_memory() {
    let m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    // The first put may be checkpointed at once (a second after startup's); the ones
    // right after it are not, and their pages wait in memory.
    for i in 0..3 {
        kv.put(PutRequest {
            key: format!("h{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let metrics = parse_metrics(&http_request(m.client_addr(), "GET", "/metrics").body);
    let held = metrics.get("mnemo_backend_held_bytes").copied();
    assert!(held.is_some_and(|h| h > 0.0), "held bytes {held:?}");
}
