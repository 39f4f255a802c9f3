//! etcd's JSON gateway on the client port: `POST /v3/<service>/<method>` with etcd
//! 3.4's grpc-gateway mapping (proto field names, 64-bit integers as strings, bytes as
//! base64), its error bodies and its newline-delimited streams.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{http_post, http_request, HttpResponse, MnemoProcess};
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest};
use serde_json::{json, Value};

fn post(m: &MnemoProcess, path: &str, body: &str) -> HttpResponse {
    http_post(m.client_addr(), path, &[], body)
}

fn parse(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body))
}

/// A call that must succeed: 200, JSON, the parsed body.
fn call(m: &MnemoProcess, path: &str, body: &str) -> Value {
    let r = post(m, path, body);
    assert_eq!(r.status, 200, "{path} {body}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    parse(&r)
}

/// Standard base64 with padding, as etcd's gateway writes bytes.
fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// grpc-gateway's error body (compared as JSON: the order of its keys is the marshaler's).
fn error_body(message: &str, code: u32) -> Value {
    json!({ "error": message, "code": code, "message": message })
}

/// Whether the tests run against etcd itself (`MNEMO_TEST_SERVER_BIN`).
fn against_etcd() -> bool {
    common::mnemo_bin() != env!("CARGO_BIN_EXE_mnemo")
}

/// A digit string, as JSONPb writes 64-bit integers.
fn is_int_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        !s.is_empty()
            && s.trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit())
    })
}

/// A streaming call kept open: the request is sent, the response read as it comes.
struct Stream {
    conn: TcpStream,
    raw: Vec<u8>,
    /// Bytes of `raw` taken as status line and headers.
    head: Option<usize>,
    /// Where the next chunk starts.
    pos: usize,
    body: String,
    /// Complete lines handed out so far.
    lines_read: usize,
}

impl Stream {
    fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Stream {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        // A guard against a hang, not a timing assertion.
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        conn.write_all(req.as_bytes()).unwrap();
        Stream {
            conn,
            raw: Vec::new(),
            head: None,
            pos: 0,
            body: String::new(),
            lines_read: 0,
        }
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 16384];
        let n = self
            .conn
            .read(&mut buf)
            .expect("the stream went quiet for 30 s");
        assert!(n > 0, "the server closed the stream; got {:?}", self.body);
        self.raw.extend_from_slice(&buf[..n]);
        if self.head.is_none() {
            if let Some(i) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                self.head = Some(i + 4);
                self.pos = i + 4;
            }
        }
        // Take every complete chunk.
        while self.head.is_some() {
            let rest = &self.raw[self.pos..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if rest.len() < eol + 2 + size + 2 {
                break;
            }
            self.body
                .push_str(std::str::from_utf8(&rest[eol + 2..eol + 2 + size]).unwrap());
            self.pos += eol + 2 + size + 2;
        }
    }

    /// The status line and headers.
    fn head(&mut self) -> String {
        while self.head.is_none() {
            self.fill();
        }
        String::from_utf8(self.raw[..self.head.unwrap()].to_vec()).unwrap()
    }

    /// The next newline-terminated JSON object of the body.
    fn next_line(&mut self) -> Value {
        loop {
            let lines: Vec<&str> = self.body.split_inclusive('\n').collect();
            if let Some(line) = lines.get(self.lines_read).filter(|l| l.ends_with('\n')) {
                self.lines_read += 1;
                return serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            }
            self.fill();
        }
    }
}

#[tokio::test]
async fn kv_over_json_matches_etcds_mapping() {
    let m = MnemoProcess::start(&[]);

    let put = call(&m, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    let header = put["header"].as_object().unwrap();
    let names: Vec<&str> = header.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 4, "{header:?}");
    for name in ["cluster_id", "member_id", "revision", "raft_term"] {
        assert!(is_int_string(&header[name]), "{name}: {header:?}");
    }
    assert_eq!(header["revision"], "2");

    let r = post(&m, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(
            r#""kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}]"#
        ),
        "{}",
        r.body
    );
    assert!(r.body.ends_with(r#""count":"1"}"#), "{}", r.body);
    // `more` is false: omitted, as JSONPb omits default values.
    assert!(!r.body.contains("more"), "{}", r.body);

    // gRPC sees the gateway's write, and the gateway gRPC's.
    let mut kv = m.kv().await;
    let got = kv
        .range(RangeRequest {
            key: b"foo".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.kvs[0].value, b"bar");
    kv.put(PutRequest {
        key: b"foo2".to_vec(),
        value: vec![0xff, 0x00, 0xfe],
        ..Default::default()
    })
    .await
    .unwrap();
    // lowerCamelCase names and numbers as numbers are accepted; /v3beta is the same API.
    let both = call(
        &m,
        "/v3beta/kv/range",
        r#"{"key":"Zm9v","rangeEnd":"Zm9w","countOnly":false,"limit":5}"#,
    );
    assert_eq!(both["count"], "2");
    assert_eq!(both["kvs"][1]["key"], b64(b"foo2"));
    assert_eq!(both["kvs"][1]["value"], "/wD+");

    // A txn with a compare that holds, then fails.
    let txn = r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
        "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}],
        "failure":[{"request_range":{"key":"Zm9v"}}]}"#;
    let t = call(&m, "/v3/kv/txn", txn);
    assert_eq!(t["succeeded"], true);
    assert!(
        t["responses"][0]["response_put"]["header"].is_object(),
        "{t}"
    );
    let t = call(&m, "/v3/kv/txn", txn);
    assert_eq!(t.get("succeeded"), None, "{t}");
    assert_eq!(
        t["responses"][0]["response_range"]["kvs"][0]["value"],
        "YmF6"
    );
    // Enum numbers work as well as names (EQUAL = 0, VALUE = 3); unknown fields are ignored.
    let t = call(
        &m,
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":0,"target":3,"value":"YmF6"}],"nosuch":1}"#,
    );
    assert_eq!(t["succeeded"], true);

    let d = call(&m, "/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#);
    assert_eq!(d["deleted"], "1");
    assert_eq!(d["prev_kvs"][0]["key"], "Zm9v");
    assert_eq!(d["prev_kvs"][0]["value"], "YmF6");
    assert_eq!(d["prev_kvs"][0]["version"], "2");
    let r = call(&m, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(r.get("kvs"), None);
    assert_eq!(r.get("count"), None);

    let c = call(&m, "/v3/kv/compaction", r#"{"revision":"3"}"#);
    assert!(c["header"].is_object());
    let r = post(&m, "/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(
        parse(&r),
        json!({
            "error": "etcdserver: mvcc: required revision has been compacted",
            "code": 11,
            "message": "etcdserver: mvcc: required revision has been compacted"
        })
    );
}

#[test]
fn bad_requests_get_grpc_gateways_errors() {
    let m = MnemoProcess::start(&["--max-request-bytes=1024"]);
    let addr = m.client_addr();

    let r = post(&m, "/v3/kv/put", r#"{"key":"Zm9v","value":"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = parse(&r);
    assert_eq!(body["code"], 3, "{body}");
    assert!(!body["error"].as_str().unwrap().is_empty());
    assert_eq!(body["error"], body["message"]);

    let r = post(&m, "/v3/kv/put", r#"{"key":"not base64!","value":"YmFy"}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(parse(&r)["code"], 3);
    let r = post(&m, "/v3/kv/range", r#"{"key":"Zm9v","limit":"ten"}"#);
    assert_eq!(
        (r.status, parse(&r)["code"].clone()),
        (400, json!(3)),
        "{}",
        r.body
    );

    // The server's own errors, mapped: InvalidArgument → 400, NotFound → 404.
    let r = post(&m, "/v3/kv/put", r#"{"value":"YmFy"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(parse(&r), error_body("etcdserver: key is not provided", 3));
    // etcd 3.4 writes the keys in this order.
    assert_eq!(
        r.body,
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
    let r = post(&m, "/v3/lease/revoke", r#"{"ID":"12345"}"#);
    assert_eq!(r.status, 404);
    assert_eq!(
        parse(&r),
        error_body("etcdserver: requested lease not found", 5)
    );
    // Over --max-request-bytes once decoded: etcd's own error.
    let big = format!(r#"{{"key":"Zm9v","value":"{}"}}"#, b64(&[b'x'; 2000]));
    let r = post(&m, "/v3/kv/put", &big);
    assert_eq!(r.status, 400);
    assert_eq!(parse(&r)["error"], "etcdserver: request is too large");
    // A body far beyond it is refused before it is read to the end (mnemo's own limit;
    // etcd's gateway reads any body).
    if !against_etcd() {
        let huge = format!(r#"{{"key":"Zm9v","value":"{}"}}"#, "A".repeat(600 * 1024));
        let r = post(&m, "/v3/kv/put", &huge);
        assert_eq!(r.status, 413, "{}", r.body);
        assert_eq!(parse(&r)["code"], 8);
    }

    // Unknown paths and methods, as etcd's grpc-gateway answers them.
    let r = post(&m, "/v3/kv/nosuch", "{}");
    assert_eq!((r.status, r.body.as_str()), (404, "Not Found\n"));
    let r = http_request(addr, "GET", "/v3/kv/range");
    assert_eq!((r.status, r.body.as_str()), (405, "Method Not Allowed\n"));
    let r = post(&m, "/v3alpha/kv/range", "{}");
    assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));

    // An empty body is the empty request; the server still serves afterwards.
    let s = call(&m, "/v3/maintenance/status", "");
    assert!(s["version"].as_str().unwrap().starts_with("3.4."), "{s}");
}

#[test]
fn leases_over_json() {
    let m = MnemoProcess::start(&[]);
    let g = call(&m, "/v3/lease/grant", r#"{"TTL":60}"#);
    assert!(is_int_string(&g["ID"]), "{g}");
    assert_eq!(g["TTL"], "60");
    let id = g["ID"].as_str().unwrap().to_string();
    call(
        &m,
        "/v3/kv/put",
        &format!(r#"{{"key":"Zm9v","value":"YmFy","lease":"{id}"}}"#),
    );

    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let t = call(&m, path, &format!(r#"{{"ID":"{id}","keys":true}}"#));
        assert_eq!(t["ID"], id.as_str());
        assert_eq!(t["grantedTTL"], "60");
        assert!(is_int_string(&t["TTL"]), "{t}");
        assert_eq!(t["keys"], json!(["Zm9v"]));
    }
    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        let l = call(&m, path, "{}");
        assert_eq!(l["leases"], json!([{ "ID": id.as_str() }]), "{path}");
    }

    // Keep-alive: one request in the body, one `{"result":…}` line back.
    let mut ka = Stream::open(
        m.client_addr(),
        "/v3/lease/keepalive",
        &[],
        &format!(r#"{{"ID":"{id}"}}"#),
    );
    let head = ka.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let line = ka.next_line();
    assert_eq!(line["result"]["ID"], id.as_str(), "{line}");
    assert_eq!(line["result"]["TTL"], "60", "{line}");
    assert!(line["result"]["header"]["revision"].is_string());
    drop(ka);

    call(&m, "/v3/kv/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    let t = call(&m, "/v3/lease/timetolive", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(t["TTL"], "-1");
    let r = call(&m, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(r.get("kvs"), None, "the lease's key is gone: {r}");
}

#[tokio::test]
async fn watch_streams_puts_from_grpc_and_from_the_gateway() {
    let m = MnemoProcess::start(&[]);
    let mut w = Stream::open(
        m.client_addr(),
        "/v3/watch",
        &[],
        r#"{"create_request":{"key":"Zm9v","prev_kv":true}}"#,
    );
    let head = w.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let created = w.next_line();
    assert_eq!(created["result"]["created"], true, "{created}");
    assert_eq!(
        created["result"].get("watch_id"),
        None,
        "the first watch is 0: {created}"
    );
    assert_eq!(created["result"]["header"]["revision"], "1");

    let mut kv = m.kv().await;
    kv.put(PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let ev = w.next_line();
    let events = &ev["result"]["events"];
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{ev}");
    // PUT is the enum's zero value: omitted.
    assert_eq!(events[0].get("type"), None, "{ev}");
    assert_eq!(
        events[0]["kv"],
        json!({"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"})
    );

    call(&m, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmF6"}"#);
    let ev = w.next_line();
    assert_eq!(ev["result"]["events"][0]["kv"]["value"], "YmF6", "{ev}");
    assert_eq!(
        ev["result"]["events"][0]["prev_kv"]["value"], "YmFy",
        "{ev}"
    );

    call(&m, "/v3/kv/deleterange", r#"{"key":"Zm9v"}"#);
    let ev = w.next_line();
    assert_eq!(ev["result"]["events"][0]["type"], "DELETE", "{ev}");
    assert_eq!(ev["result"]["header"]["revision"], "4", "{ev}");

    // The response lasts while the client stays; when it goes, so does its watcher.
    assert_eq!(watchers(&m), 1);
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(30);
    while watchers(&m) != 0 {
        assert!(Instant::now() < deadline, "the watcher outlived its client");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `etcd_debugging_mvcc_watcher_total` from `/metrics`.
fn watchers(m: &MnemoProcess) -> u64 {
    let r = http_request(m.client_addr(), "GET", "/metrics");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn auth_over_json_uses_the_authorization_header() {
    let m = MnemoProcess::start(&["--bcrypt-cost=4"]);
    let addr = m.client_addr();
    common::enable_auth_with_root(&mut m.auth().await, "rootpw").await;

    let r = post(&m, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(parse(&r), error_body("etcdserver: user name is empty", 3));
    let r = http_post(
        addr,
        "/v3/kv/range",
        &[("Authorization", "bogus.1")],
        r#"{"key":"Zm9v"}"#,
    );
    assert_eq!(r.status, 401);
    assert_eq!(parse(&r), error_body("etcdserver: invalid auth token", 16));
    let r = post(
        &m,
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"wrong"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);

    let a = call(
        &m,
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"rootpw"}"#,
    );
    let token = a["token"].as_str().unwrap().to_string();
    assert!(!token.is_empty());
    let root = [("Authorization", token.as_str())];
    let r = http_post(
        addr,
        "/v3/kv/put",
        &root,
        r#"{"key":"Zm9v","value":"YmFy"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http_post(addr, "/v3/kv/range", &root, r#"{"key":"Zm9v"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(parse(&r)["kvs"][0]["value"], "YmFy");
    // grpc-gateway's other spelling: metadata `token` from `Grpc-Metadata-Token`.
    let r = http_post(
        addr,
        "/v3/kv/range",
        &[("Grpc-Metadata-Token", token.as_str())],
        r#"{"key":"Zm9v"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Auth administration through the gateway; a user without a role is refused: 403.
    let r = http_post(
        addr,
        "/v3/auth/user/add",
        &root,
        r#"{"name":"u","password":"upw"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let users = parse(&http_post(addr, "/v3/auth/user/list", &root, "{}"));
    assert_eq!(users["users"], json!(["root", "u"]));
    // AuthStatus is etcd 3.5's.
    if !against_etcd() {
        let st = parse(&http_post(addr, "/v3/auth/status", &root, "{}"));
        assert_eq!(st["enabled"], true, "{st}");
    }
    let u = call(
        &m,
        "/v3/auth/authenticate",
        r#"{"name":"u","password":"upw"}"#,
    );
    let r = http_post(
        addr,
        "/v3/kv/range",
        &[("Authorization", u["token"].as_str().unwrap())],
        r#"{"key":"Zm9v"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(parse(&r)["code"], 7);

    // A streaming call that fails at once answers with the status of its error and
    // grpc-gateway's stream error (etcd words this one for Snapshot).
    let r = http_post(
        addr,
        "/v3/maintenance/snapshot",
        &[("Authorization", "bogus.1")],
        "{}",
    );
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        r#"{"error":{"grpc_code":2,"http_code":500,"message":"auth: invalid auth token","http_status":"Internal Server Error"}}"#
    );
}

#[test]
fn maintenance_and_cluster_over_json() {
    let m = MnemoProcess::start(&[]);
    let s = call(&m, "/v3/maintenance/status", "{}");
    assert!(s["version"].as_str().unwrap().starts_with("3.4."), "{s}");
    assert!(is_int_string(&s["dbSize"]), "{s}");
    assert!(is_int_string(&s["raftIndex"]), "{s}");
    assert_eq!(s["leader"], s["header"]["member_id"], "{s}");

    let l = call(&m, "/v3/cluster/member/list", "{}");
    let members = l["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{l}");
    assert_eq!(members[0]["name"], "default");
    assert_eq!(members[0]["ID"], s["header"]["member_id"]);
    assert_eq!(members[0]["clientURLs"], json!([m.client_url()]));
    assert_eq!(members[0]["peerURLs"], json!([m.addrs.peer_url()]));
    assert!(is_int_string(&l["header"]["cluster_id"]));

    call(&m, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    // etcd 3.4 runs Hash at this path (HashKV's binding to it never wins).
    let h = call(&m, "/v3/maintenance/hash", "{}");
    assert!(h["hash"].is_u64(), "uint32 is a JSON number: {h}");
    assert_eq!(h.get("hash_revision"), None, "{h}");
    // 3.5's path for HashKV.
    if !against_etcd() {
        let h = call(&m, "/v3/maintenance/hashkv", "{}");
        assert_eq!(h["hash_revision"], "2", "{h}");
        assert!(h["hash"].is_u64(), "{h}");
    }
    let a = call(&m, "/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    assert_eq!(a.get("alarms"), None, "{a}");

    // The snapshot stream ends by itself: read the whole body.
    let r = post(&m, "/v3/maintenance/snapshot", "{}");
    assert_eq!(r.status, 200);
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line["result"]["blob"].is_string(), "{line}");
    }
    assert_eq!(lines.last().unwrap()["result"].get("remaining_bytes"), None);
}

#[test]
fn lock_and_election_over_json() {
    let m = MnemoProcess::start(&[]);
    let g = call(&m, "/v3/lease/grant", r#"{"TTL":60}"#);
    let id = g["ID"].as_str().unwrap().to_string();

    let l = call(
        &m,
        "/v3/lock/lock",
        &format!(r#"{{"name":"{}","lease":"{id}"}}"#, b64(b"mylock")),
    );
    let key = l["key"].as_str().unwrap().to_string();
    // The lock key is `name/<lease id in hex>`.
    let lease_hex = format!("{:x}", id.parse::<i64>().unwrap());
    assert_eq!(key, b64(format!("mylock/{lease_hex}").as_bytes()));
    let held = call(&m, "/v3/kv/range", &format!(r#"{{"key":"{key}"}}"#));
    assert_eq!(held["count"], "1");
    call(&m, "/v3/lock/unlock", &format!(r#"{{"key":"{key}"}}"#));
    let held = call(&m, "/v3/kv/range", &format!(r#"{{"key":"{key}"}}"#));
    assert_eq!(held.get("count"), None);

    let name = b64(b"election");
    let c = call(
        &m,
        "/v3/election/campaign",
        &format!(
            r#"{{"name":"{name}","lease":"{id}","value":"{}"}}"#,
            b64(b"v1")
        ),
    );
    let leader = c["leader"].clone();
    assert_eq!(leader["name"], name.as_str(), "{c}");
    assert_eq!(leader["lease"], id.as_str(), "{c}");
    let who = call(
        &m,
        "/v3/election/leader",
        &format!(r#"{{"name":"{name}"}}"#),
    );
    assert_eq!(who["kv"]["value"], b64(b"v1"), "{who}");
    call(
        &m,
        "/v3/election/proclaim",
        &json!({"leader": leader, "value": b64(b"v2")}).to_string(),
    );
    let mut observe = Stream::open(
        m.client_addr(),
        "/v3/election/observe",
        &[],
        &format!(r#"{{"name":"{name}"}}"#),
    );
    let seen = observe.next_line();
    assert_eq!(seen["result"]["kv"]["value"], b64(b"v2"), "{seen}");
    call(
        &m,
        "/v3/election/resign",
        &json!({ "leader": leader }).to_string(),
    );
    let r = post(
        &m,
        "/v3/election/leader",
        &format!(r#"{{"name":"{name}"}}"#),
    );
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(
        parse(&r),
        json!({"error":"election: no leader","code":2,"message":"election: no leader"})
    );
}
