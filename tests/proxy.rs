//! The fault-injecting TCP proxy of `tests/common`: each fault against an echo server,
//! and a real member's gRPC service through it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::proxy::{Direction, Fault, FaultProxy};
use common::MnemoProcess;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// How long a test waits to conclude that bytes do not arrive.
const QUIET: Duration = Duration::from_millis(300);
/// A guard against hanging forever where an answer must come.
const LIVENESS: Duration = Duration::from_secs(20);

/// An echo server on a free port, running on the test's runtime.
async fn echo_server() -> SocketAddr {
    let listener = common::bind_unclaimed();
    listener
        .set_nonblocking(true)
        .expect("cannot make the echo server's listener non-blocking");
    let listener = TcpListener::from_std(listener).expect("cannot register the echo server");
    let addr = listener
        .local_addr()
        .expect("the echo server has an address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    TcpStream::connect(proxy.addr())
        .await
        .expect("cannot connect to the proxy")
}

/// Sends `bytes` and reads as many back.
async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream
        .write_all(bytes)
        .await
        .expect("write through the proxy");
    let mut back = vec![0; bytes.len()];
    tokio::time::timeout(LIVENESS, stream.read_exact(&mut back))
        .await
        .expect("the echo comes back")
        .expect("read through the proxy");
    back
}

/// Whether anything arrives on `stream` within `QUIET`.
async fn arrives(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(QUIET, stream.read(&mut buf))
        .await
        .is_ok()
}

/// Whether the connection ends (end of stream or a reset) rather than giving data.
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(LIVENESS, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the connection neither closed nor answered within {LIVENESS:?}"),
    }
}

#[tokio::test]
async fn pass_forwards_both_ways_in_order() {
    let proxy = FaultProxy::start(echo_server().await);
    let mut s = connect(&proxy).await;
    assert_eq!(round_trip(&mut s, b"hello").await, b"hello");
    // A megabyte, written while it is read back, arrives whole and in order.
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|()| w) });
    let mut back = vec![0; data.len()];
    tokio::time::timeout(LIVENESS, r.read_exact(&mut back))
        .await
        .expect("a megabyte comes back")
        .expect("read a megabyte");
    assert!(back == data, "the megabyte came back changed");
    let _w = writer
        .await
        .expect("writer task")
        .expect("write a megabyte");
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test]
async fn delay_adds_at_least_the_delay() {
    let proxy = FaultProxy::start(echo_server().await);
    let mut s = connect(&proxy).await;
    let forward = Duration::from_millis(150);
    let backward = Duration::from_millis(100);
    proxy.delay(Direction::Forward, forward);
    proxy.delay(Direction::Backward, backward);
    assert_eq!(proxy.fault(Direction::Forward), Fault::Delay(forward));
    let start = Instant::now();
    assert_eq!(round_trip(&mut s, b"slow").await, b"slow");
    let elapsed = start.elapsed();
    assert!(elapsed >= forward + backward, "round trip took {elapsed:?}");
    // Back to passing, the same connection goes on.
    proxy.pass(Direction::Both);
    assert_eq!(round_trip(&mut s, b"fast").await, b"fast");
}

#[tokio::test]
async fn drop_loses_bytes_of_one_direction_only_while_set() {
    let proxy = FaultProxy::start(echo_server().await);
    let mut s = connect(&proxy).await;
    proxy.drop_all(Direction::Forward);
    s.write_all(b"lost")
        .await
        .expect("writes succeed while dropped");
    assert!(!arrives(&mut s).await, "dropped bytes were echoed");
    // After passing again only the new bytes come back: the dropped ones are gone.
    proxy.pass(Direction::Forward);
    assert_eq!(round_trip(&mut s, b"kept").await, b"kept");

    // Dropping the way back: the echo server answers, the client gets nothing.
    proxy.drop_all(Direction::Backward);
    s.write_all(b"unheard").await.expect("write");
    assert!(!arrives(&mut s).await, "dropped echo arrived");
    proxy.pass(Direction::Backward);
    assert_eq!(round_trip(&mut s, b"heard").await, b"heard");
}

#[tokio::test]
async fn blackhole_holds_connections_and_pass_resumes_them() {
    let proxy = FaultProxy::start(echo_server().await);
    proxy.blackhole(Direction::Both);
    let mut held = connect(&proxy).await;
    held.write_all(b"held")
        .await
        .expect("a small write fits the buffers");
    assert!(!arrives(&mut held).await, "bytes passed a blackhole");
    proxy.pass(Direction::Both);
    // A new connection works, and the held one delivers what it held.
    let mut fresh = connect(&proxy).await;
    assert_eq!(round_trip(&mut fresh, b"fresh").await, b"fresh");
    let mut back = [0u8; 4];
    tokio::time::timeout(LIVENESS, held.read_exact(&mut back))
        .await
        .expect("the held bytes come back")
        .expect("read held bytes");
    assert_eq!(&back, b"held");
}

#[tokio::test]
async fn reset_closes_connections_and_down_closes_new_ones() {
    let proxy = FaultProxy::start(echo_server().await);
    let mut first = connect(&proxy).await;
    assert_eq!(round_trip(&mut first, b"one").await, b"one");
    // A round trip each, so that the proxy has accepted both before the reset (a
    // connection still in the listen backlog would count as a new one).
    let mut held = connect(&proxy).await;
    assert_eq!(round_trip(&mut held, b"held").await, b"held");
    proxy.blackhole(Direction::Both);
    proxy.reset();
    assert!(is_closed(&mut first).await, "reset left a connection open");
    assert!(
        is_closed(&mut held).await,
        "reset left a blackholed connection open"
    );
    proxy.pass(Direction::Both);

    // After a reset, new connections work.
    let mut second = connect(&proxy).await;
    assert_eq!(round_trip(&mut second, b"two").await, b"two");

    // Down: the open one closes, and new ones are closed as soon as they connect.
    proxy.set_down(true);
    assert!(
        is_closed(&mut second).await,
        "going down left a connection open"
    );
    // The reset may come before the connect returns, or after.
    if let Ok(mut refused) = TcpStream::connect(proxy.addr()).await {
        assert!(
            is_closed(&mut refused).await,
            "a connection was served while down"
        );
    }
    proxy.set_down(false);
    let mut third = connect(&proxy).await;
    assert_eq!(round_trip(&mut third, b"three").await, b"three");
}

#[tokio::test]
async fn a_target_that_refuses_closes_the_client_connection() {
    // A port nobody listens on (free when asked).
    let nowhere = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let proxy = FaultProxy::start(nowhere);
    // The proxy's reset may come before the connect returns, or after.
    match TcpStream::connect(proxy.addr()).await {
        Ok(mut s) => assert!(is_closed(&mut s).await, "the client connection stayed open"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

async fn channel(proxy: &FaultProxy) -> Channel {
    Endpoint::from_shared(proxy.url())
        .expect("the proxy URL is valid")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("cannot connect through the proxy")
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> Result<(), tonic::Status> {
    let req = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    tokio::time::timeout(LIVENESS, kv.put(req))
        .await
        .expect("the channel's timeout ends the request")
        .map(|_| ())
}

async fn get(kv: &mut KvClient<Channel>, key: &str) -> Option<Vec<u8>> {
    let req = RangeRequest {
        key: key.into(),
        ..Default::default()
    };
    let r = kv.range(req).await.expect("range through the proxy");
    r.into_inner().kvs.first().map(|kv| kv.value.clone())
}

#[tokio::test]
async fn member_behind_the_proxy_serves_and_times_out_when_blackholed() {
    let m = MnemoProcess::start(&[]);
    let proxy = FaultProxy::start(m.client_addr());
    let mut kv = KvClient::new(channel(&proxy).await);
    put(&mut kv, "a", "1").await.expect("put through the proxy");
    assert_eq!(get(&mut kv, "a").await.as_deref(), Some(&b"1"[..]));

    proxy.blackhole(Direction::Both);
    let err = put(&mut kv, "b", "2")
        .await
        .expect_err("a put through a blackhole fails");
    assert!(
        matches!(
            err.code(),
            Code::DeadlineExceeded | Code::Unavailable | Code::Cancelled
        ),
        "{err:?}"
    );

    proxy.pass(Direction::Both);
    let mut kv = KvClient::new(channel(&proxy).await);
    put(&mut kv, "c", "3")
        .await
        .expect("put after passing again");
    assert_eq!(get(&mut kv, "c").await.as_deref(), Some(&b"3"[..]));
    assert_eq!(get(&mut kv, "a").await.as_deref(), Some(&b"1"[..]));
}
