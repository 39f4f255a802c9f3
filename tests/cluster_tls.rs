//! TLS on the peer URLs, with three real mnemo processes: https peer URLs with
//! `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file` and
//! `--peer-client-cert-auth`; `--peer-cert-allowed-cn`; a member whose certificate the
//! others do not trust kept out; a member added to a TLS cluster; `--peer-auto-tls`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::certs::{Ca, Issued};
use common::{MemberAddrs, MnemoCluster, MnemoProcess};
use mnemo_proto::etcdserverpb::{MemberAddRequest, MemberListRequest, PutRequest, RangeRequest};
use mnemo_proto::etcdserverpb::{StatusRequest, StatusResponse};
use mnemo_proto::mnemopeerpb::peer_client::PeerClient;
use mnemo_proto::mnemopeerpb::PeerHeader;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Short timeouts keep elections quick in tests: 50 ms heartbeats, 500 ms elections.
const FAST: [&str; 2] = ["--heartbeat-interval=50", "--election-timeout=500"];

/// The peer TLS flags of a member presenting `cert`, trusting `ca`.
fn peer_flags(cert: &Issued, ca: &Ca) -> Vec<String> {
    let mut flags: Vec<String> = FAST.iter().map(|f| f.to_string()).collect();
    flags.extend([
        format!("--peer-cert-file={}", cert.cert.display()),
        format!("--peer-key-file={}", cert.key.display()),
        format!("--peer-trusted-ca-file={}", ca.file().display()),
        "--peer-client-cert-auth".to_string(),
    ]);
    flags
}

async fn put(m: &MnemoProcess, key: &str, value: &str) {
    m.kv()
        .await
        .put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The value of `key` in `m`'s own copy (a serializable read); `None` also when `m`
/// does not answer.
async fn local_value(m: &MnemoProcess, key: &str) -> Option<Vec<u8>> {
    let mut kv = m.kv().await;
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        kv.range(RangeRequest {
            key: key.into(),
            serializable: true,
            ..Default::default()
        }),
    )
    .await
    .ok()?
    .ok()?;
    r.into_inner().kvs.into_iter().next().map(|kv| kv.value)
}

/// Waits until `m` has `key` = `value` in its own copy.
async fn wait_for_value(m: &MnemoProcess, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while local_value(m, key).await.as_deref() != Some(value.as_bytes()) {
        assert!(
            Instant::now() < deadline,
            "{} never saw {key}={value}\n--- stderr:\n{}",
            m.addrs.name,
            m.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(m: &MnemoProcess) -> StatusResponse {
    m.maintenance()
        .await
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Asks the peer service at `url` for the members, over TLS trusting `ca`, with `cert`
/// as the client certificate. `Err` carries what failed.
async fn peer_members(url: &str, ca: &Ca, cert: Option<&Issued>) -> Result<usize, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("127.0.0.1");
    if let Some(cert) = cert {
        tls = tls.identity(cert.identity());
    }
    let channel = Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut req = tonic::Request::new(PeerHeader::default());
    req.set_timeout(Duration::from_secs(2));
    PeerClient::new(channel)
        .members(req)
        .await
        .map(|r| r.into_inner().members.len())
        .map_err(|e| format!("members: {e:?}"))
}

#[tokio::test]
async fn https_peers_replicate_and_refuse_untrusted_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peer-ca");
    let certs: Vec<Issued> = (1..=4)
        .map(|i| ca.issue(&format!("m{i}"), "peer"))
        .collect();
    let addrs: Vec<MemberAddrs> = (1..=3)
        .map(|i| MemberAddrs::with_peer_tls(&format!("m{i}")))
        .collect();
    let allowed = "--peer-cert-allowed-cn=peer".to_string();
    let mut c = MnemoCluster::spawn(addrs, |i| {
        let mut f = peer_flags(&certs[i], &ca);
        f.push(allowed.clone());
        f
    });
    for m in &mut c.members {
        m.wait_ready();
    }

    put(&c.members[0], "over-tls", "v1").await;
    for m in &c.members {
        wait_for_value(m, "over-tls", "v1").await;
    }
    let members = c.members[1]
        .cluster()
        .await
        .member_list(MemberListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 3);
    for m in &members {
        assert!(m.peer_ur_ls[0].starts_with("https://"), "{m:?}");
    }

    // The peer port speaks TLS only, and only to certificates of the CA with the
    // allowed CommonName.
    let peer_url = c.members[0].addrs.peer_url();
    assert_eq!(peer_members(&peer_url, &ca, Some(&certs[3])).await, Ok(3));
    let intruder = ca.issue("intruder", "intruder");
    let refused = peer_members(&peer_url, &ca, Some(&intruder)).await;
    assert!(refused.is_err(), "a CN that is not allowed was served");
    // The member logs the refusal on its own time, possibly after the client saw it.
    c.members[0].wait_for_log(
        "the certificate's CommonName is not allowed",
        Duration::from_secs(10),
    );
    assert!(peer_members(&peer_url, &ca, None).await.is_err());
    let other_ca = Ca::new(dir.path(), "other-ca");
    let stranger = other_ca.issue("stranger", "peer");
    assert!(peer_members(&peer_url, &ca, Some(&stranger)).await.is_err());
    let plain = peer_url.replace("https://", "http://");
    let mut plain_client = PeerClient::connect(plain).await.unwrap();
    let mut req = tonic::Request::new(PeerHeader::default());
    req.set_timeout(Duration::from_secs(2));
    assert!(plain_client.members(req).await.is_err());

    // A member added to the TLS cluster learns its id over TLS and catches up.
    let new = MemberAddrs::with_peer_tls("m4");
    let added = c.members[2]
        .cluster()
        .await
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![new.peer_url()],
            is_learner: false,
        })
        .await
        .unwrap()
        .into_inner();
    let initial_cluster = added
        .members
        .iter()
        .map(|m| {
            let name = if m.name.is_empty() { "m4" } else { &m.name };
            format!("{name}={}", m.peer_ur_ls[0])
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut args = peer_flags(&certs[3], &ca);
    args.push(allowed);
    args.push("--initial-cluster-state=existing".to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m4 = MnemoProcess::spawn_member(new, initial_cluster, &args, &[]);
    m4.wait_ready();
    wait_for_value(&m4, "over-tls", "v1").await;
    put(&m4, "from-m4", "v2").await;
    wait_for_value(&c.members[0], "from-m4", "v2").await;
    assert_eq!(
        status(&m4).await.header.unwrap().member_id,
        added.member.unwrap().id
    );
}

#[tokio::test]
async fn a_member_with_an_untrusted_certificate_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peer-ca");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let trusted: Vec<Issued> = (1..=2)
        .map(|i| ca.issue(&format!("m{i}"), "peer"))
        .collect();
    // m3 trusts the cluster's CA but presents a certificate of another one.
    let stranger = other_ca.issue("m3", "peer");
    let addrs: Vec<MemberAddrs> = (1..=3)
        .map(|i| MemberAddrs::with_peer_tls(&format!("m{i}")))
        .collect();
    let mut c = MnemoCluster::spawn(addrs, |i| match i {
        0 | 1 => peer_flags(&trusted[i], &ca),
        _ => peer_flags(&stranger, &ca),
    });
    // m1 and m2 are a quorum of three.
    c.members[0].wait_ready();
    c.members[1].wait_ready();
    put(&c.members[0], "k", "v").await;
    wait_for_value(&c.members[1], "k", "v").await;

    // m3 serves clients once it gives up waiting for a leader; it has none and none of
    // the data.
    c.members[2].wait_ready();
    let s = status(&c.members[2]).await;
    assert_eq!(s.leader, 0, "m3 found a leader: {s:?}");
    assert_eq!(local_value(&c.members[2], "k").await, None);
    let refused = |m: &MnemoProcess| m.stderr().contains("rejected connection");
    assert!(
        refused(&c.members[0]) || refused(&c.members[1]),
        "no member logged the refused handshake\n--- m1:\n{}",
        c.members[0].stderr()
    );
}

#[tokio::test]
async fn peer_auto_tls_cluster() {
    let addrs: Vec<MemberAddrs> = (1..=3)
        .map(|i| MemberAddrs::with_peer_tls(&format!("m{i}")))
        .collect();
    let mut c = MnemoCluster::spawn(addrs, |_| {
        let mut f: Vec<String> = FAST.iter().map(|f| f.to_string()).collect();
        f.push("--peer-auto-tls".to_string());
        f
    });
    for m in &mut c.members {
        m.wait_ready();
    }
    put(&c.members[2], "auto", "tls").await;
    for m in &c.members {
        wait_for_value(m, "auto", "tls").await;
        let cert = m.data_dir().join("fixtures").join("peer").join("cert.pem");
        assert!(cert.is_file(), "{} has no {}", m.addrs.name, cert.display());
    }
}
