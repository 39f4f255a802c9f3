//! TLS on the client port against the real binary: https URLs with `--cert-file` and
//! `--key-file`, `--client-cert-auth` with `--trusted-ca-file`, the certificate's CN as
//! the auth user, `--auto-tls`, and the HTTP endpoints over TLS.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::certs::{Ca, Issued};
use common::MnemoProcess;
use mnemo_proto::etcdserverpb::auth_client::AuthClient;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

/// How long a test waits for the server's "ready" log line.
const READY: Duration = Duration::from_secs(30);

/// A member serving `https://127.0.0.1:<client port>` with `server` and `extra` flags.
fn start_tls(server: Option<&Issued>, extra: &[String]) -> (MnemoProcess, String) {
    let port = common::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let mut args = vec![
        format!("--listen-client-urls={url}"),
        format!("--advertise-client-urls={url}"),
    ];
    if let Some(s) = server {
        args.push(format!("--cert-file={}", s.cert.display()));
        args.push(format!("--key-file={}", s.key.display()));
    }
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m = MnemoProcess::spawn(&args, &[]);
    m.addrs.client_port = port;
    m.wait_for_log("ready to serve client requests", READY);
    (m, url)
}

async fn connect(url: &str, tls: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

fn trusting(ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost")
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

/// Whether a put through a fresh connection with `tls` succeeds.
async fn put_works(url: &str, tls: ClientTlsConfig) -> bool {
    match connect(url, tls).await {
        Ok(channel) => KvClient::new(channel).put(put("probe", "x")).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn put_and_get_over_tls_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.issue("server", "mnemo");
    let (m, url) = start_tls(Some(&server), &[]);

    let mut kv = KvClient::new(connect(&url, trusting(&ca.pem())).await.unwrap());
    kv.put(put("a", "1")).await.unwrap();
    let got = kv.range(get("a")).await.unwrap().into_inner();
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(got.kvs[0].value, b"1");

    // Plain HTTP/2 to the TLS port: the handshake fails, the request too.
    let plain = format!("http://127.0.0.1:{}", m.addrs.client_port);
    let plain_result = match Endpoint::from_shared(plain)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
    {
        Ok(channel) => KvClient::new(channel).range(get("a")).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(plain_result.is_err(), "a plaintext client was served");

    // A client that does not trust the server's CA is refused by its own side.
    let other = Ca::new(dir.path(), "other");
    assert!(!put_works(&url, trusting(&other.pem())).await);

    // The listener survived the failed handshakes; the first connection still works.
    let got = kv.range(get("a")).await.unwrap().into_inner();
    assert_eq!(got.kvs[0].value, b"1");
    assert!(put_works(&url, trusting(&ca.pem())).await);
    drop(m);
}

#[tokio::test]
async fn client_cert_auth_requires_a_certificate_from_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.issue("server", "mnemo");
    let client = ca.issue("client", "some-user");
    let other = Ca::new(dir.path(), "other");
    let stranger = other.issue("stranger", "some-user");
    let (_m, url) = start_tls(
        Some(&server),
        &[
            format!("--trusted-ca-file={}", ca.file().display()),
            "--client-cert-auth".to_string(),
        ],
    );

    assert!(
        !put_works(&url, trusting(&ca.pem())).await,
        "a client without a certificate was served"
    );
    assert!(
        !put_works(&url, trusting(&ca.pem()).identity(stranger.identity())).await,
        "a certificate from another CA was accepted"
    );
    let channel = connect(&url, trusting(&ca.pem()).identity(client.identity()))
        .await
        .unwrap();
    let mut kv = KvClient::new(channel);
    kv.put(put("k", "v")).await.unwrap();
    assert_eq!(kv.range(get("k")).await.unwrap().into_inner().count, 1);
}

#[tokio::test]
async fn certificate_common_name_is_the_auth_user() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.issue("server", "mnemo");
    let root = ca.issue("root", "root");
    let unknown = ca.issue("unknown", "unknown-user");
    let (_m, url) = start_tls(
        Some(&server),
        &[
            format!("--trusted-ca-file={}", ca.file().display()),
            "--client-cert-auth".to_string(),
            "--bcrypt-cost=4".to_string(),
        ],
    );

    let as_root = connect(&url, trusting(&ca.pem()).identity(root.identity()))
        .await
        .unwrap();
    common::enable_auth_with_root(&mut AuthClient::new(as_root.clone()), "rootpw").await;

    // No token: the certificate's CN, root, is the user.
    let mut kv = KvClient::new(as_root);
    kv.put(put("secret", "1")).await.unwrap();
    assert_eq!(kv.range(get("secret")).await.unwrap().into_inner().count, 1);

    // A CN that names no user is denied, with etcd's error.
    let channel = connect(&url, trusting(&ca.pem()).identity(unknown.identity()))
        .await
        .unwrap();
    let mut kv = KvClient::new(channel);
    for status in [
        kv.range(get("secret")).await.unwrap_err(),
        kv.put(put("secret", "2")).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(status.message(), "etcdserver: permission denied");
    }
}

#[tokio::test]
async fn auto_tls_serves_a_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (m, url) = start_tls(None, &["--auto-tls".to_string()]);
    let fixtures = m.data_dir().join("fixtures").join("client");
    let cert = std::fs::read_to_string(fixtures.join("cert.pem")).unwrap();
    assert!(fixtures.join("key.pem").is_file());

    // The generated certificate is self-signed for the listen host: trusting it as its
    // own CA verifies the server.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert))
        .domain_name("127.0.0.1");
    let mut kv = KvClient::new(connect(&url, tls).await.unwrap());
    kv.put(put("auto", "tls")).await.unwrap();
    assert_eq!(kv.range(get("auto")).await.unwrap().into_inner().count, 1);

    // A client that knows no such CA is refused by its own side.
    let other = Ca::new(dir.path(), "other");
    assert!(!put_works(&url, trusting(&other.pem())).await);
}

#[tokio::test]
async fn health_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.issue("server", "mnemo");
    let (m, _url) = start_tls(Some(&server), &[]);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ca.cert.der().to_vec(),
        ))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", m.addrs.client_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    // The server closes after the response (`Connection: close`); a TLS peer that just
    // drops the TCP connection ends the read with an error after the bytes.
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""health":"true""#), "{text}");
}

#[test]
fn missing_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cert.pem");
    let port = common::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let out = common::mnemo_command()
        .args([
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
            format!("--cert-file={}", missing.display()),
            format!("--key-file={}", missing.display()),
            format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                common::free_port()
            ),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("open {}:", missing.display())),
        "{stderr}"
    );
}

/// One HTTP/1.1 POST over TLS with `client` as the client certificate; the response
/// as text.
async fn https_post(
    port: u16,
    ca: &Ca,
    client: &Issued,
    path: &str,
    headers: &str,
    body: &str,
) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert.der().to_vec()))
        .unwrap();
    let certs = vec![CertificateDer::from_pem_file(&client.cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&client.key).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// etcd's JSON gateway takes no identity from a client certificate: with
/// `--client-cert-auth` and auth on, a certificate with a CN is refused, token or not.
#[tokio::test]
async fn json_gateway_refuses_a_common_name_while_auth_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.issue("server", "mnemo");
    let root = ca.issue("root", "root");
    let (m, url) = start_tls(
        Some(&server),
        &[
            format!("--trusted-ca-file={}", ca.file().display()),
            "--client-cert-auth".to_string(),
            "--bcrypt-cost=4".to_string(),
        ],
    );
    let port = m.addrs.client_port;
    let put = r#"{"key":"Zm9v","value":"YmFy"}"#;

    // Auth off: the certificate is just a certificate.
    let r = https_post(port, &ca, &root, "/v3/kv/put", "", put).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    let as_root = connect(&url, trusting(&ca.pem()).identity(root.identity()))
        .await
        .unwrap();
    common::enable_auth_with_root(&mut AuthClient::new(as_root), "rootpw").await;

    let login = r#"{"name":"root","password":"rootpw"}"#;
    let refused = "\r\n\r\nCommonName of client sending a request against gateway will be ignored and not used as expected\n";
    for (path, body) in [
        ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
        ("/v3beta/auth/authenticate", login),
    ] {
        let r = https_post(port, &ca, &root, path, "", body).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
        assert!(r.ends_with(refused), "{path}: {r}");
    }
    let r = https_post(
        port,
        &ca,
        &root,
        "/v3/kv/range",
        "Authorization: any\r\n",
        "{}",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400") && r.ends_with(refused), "{r}");
    // Other HTTP endpoints are not the gateway.
    let r = https_post(port, &ca, &root, "/health", "", "").await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
}
