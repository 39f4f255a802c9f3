//! The Watch service on a loopback port, driven by the generated etcd client.

use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::etcdserverpb::watch_client::WatchClient;
use mnemo_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use mnemo_proto::mvccpb::Event;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::*;
use crate::mvcc::watch::fake::{FakeHistory, Op};
use crate::mvcc::watch::History;

struct Server {
    history: Arc<FakeHistory>,
    hub: Arc<WatchHub>,
    client: WatchClient<Channel>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        cluster_id: 11,
        member_id: 22,
        revision,
        raft_term: 33,
    }
}

async fn start(config: WatchServiceConfig) -> Server {
    let history = Arc::new(FakeHistory::default());
    let hub = Arc::new(WatchHub::new(Arc::clone(&history) as Arc<dyn History>));
    let service = WatchService::new(Arc::clone(&hub), Arc::new(header), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    let client = WatchClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Server {
        history,
        hub,
        client,
        task,
    }
}

impl Server {
    fn put(&self, key: &str, value: &str) -> i64 {
        let applied = self.history.put(key.as_bytes(), value.as_bytes());
        self.hub.notify(&applied);
        applied.revision
    }
}

/// One Watch call from the client side.
struct Call {
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl Call {
    async fn open(server: &Server) -> Call {
        let (requests, rx) = mpsc::channel(16);
        let responses = server
            .client
            .clone()
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Call {
            requests,
            responses,
        }
    }

    async fn send(&self, req: RequestUnion) {
        self.requests
            .send(WatchRequest {
                request_union: Some(req),
            })
            .await
            .unwrap();
    }

    async fn create(&self, req: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(req)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.responses.message())
            .await
            .expect("a response within 10s")
            .expect("no error")
            .expect("stream open")
    }

    async fn quiet(&mut self) {
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(150), self.responses.message()).await
        {
            panic!("expected nothing, got {r:?}");
        }
    }
}

fn create(key: &str, range_end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
        start_revision: start,
        ..WatchCreateRequest::default()
    }
}

fn revs(events: &[Event]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect()
}

#[tokio::test]
async fn create_events_and_cancel_over_grpc() {
    let server = start(WatchServiceConfig::default()).await;
    server.put("a", "0");
    let mut call = Call::open(&server).await;
    call.create(create("a", "b", 0)).await;
    let created = call.next().await;
    assert!(created.created && !created.canceled);
    assert_eq!(created.watch_id, 0);
    assert_eq!(created.header, Some(header(1)));

    server.put("a", "1");
    server.put("zzz", "ignored");
    server.put("a/b", "2");
    let r = call.next().await;
    assert_eq!((r.watch_id, revs(&r.events)), (0, vec![2]));
    assert_eq!(r.header, Some(header(2)));
    assert_eq!(r.events[0].kv.as_ref().unwrap().value, b"1");
    assert!(r.events[0].prev_kv.is_none());
    let r = call.next().await;
    assert_eq!(revs(&r.events), vec![4]);

    // A second watcher on the same call, from the past, with prev_kv.
    let mut past = create("a", "", 1);
    past.prev_kv = true;
    call.create(past).await;
    let r = call.next().await;
    assert!(r.created);
    assert_eq!(r.watch_id, 1);
    let r = call.next().await;
    assert_eq!((r.watch_id, revs(&r.events)), (1, vec![1, 2]));
    assert_eq!(r.events[1].prev_kv.as_ref().unwrap().value, b"0");

    call.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 0,
    }))
    .await;
    let r = call.next().await;
    assert!(r.canceled && !r.created);
    assert_eq!((r.watch_id, r.header), (0, Some(header(4))));
    server.put("a", "3");
    let r = call.next().await;
    assert_eq!((r.watch_id, revs(&r.events)), (1, vec![5]));
    call.quiet().await;
}

#[tokio::test]
async fn client_chosen_ids_and_refused_creates_follow_etcd() {
    let server = start(WatchServiceConfig::default()).await;
    let mut call = Call::open(&server).await;
    let mut chosen = create("k", "", 0);
    chosen.watch_id = 7;
    call.create(chosen.clone()).await;
    let r = call.next().await;
    assert!(r.created && !r.canceled);
    assert_eq!(r.watch_id, 7);

    call.create(chosen).await;
    let r = call.next().await;
    assert!(r.created && r.canceled);
    assert_eq!(r.watch_id, -1);
    assert_eq!(
        r.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    call.create(create("b", "a", 0)).await;
    let r = call.next().await;
    assert!(r.created && r.canceled);
    assert_eq!(r.watch_id, -1);
    assert_eq!(r.cancel_reason, "mvcc: watcher range is empty");

    call.create(create("k", "", -1)).await;
    let r = call.next().await;
    assert!(r.created && r.canceled);
    assert_eq!(
        r.cancel_reason,
        "etcdserver: mvcc: required revision has been compacted"
    );

    // An empty request is ignored; the stream stays usable.
    call.requests
        .send(WatchRequest {
            request_union: None,
        })
        .await
        .unwrap();
    server.put("k", "v");
    let r = call.next().await;
    assert_eq!((r.watch_id, revs(&r.events)), (7, vec![1]));
}

#[tokio::test]
async fn compacted_start_is_canceled_with_the_compact_revision() {
    let server = start(WatchServiceConfig::default()).await;
    for i in 0..5 {
        server.put("k", &i.to_string());
    }
    server.history.compact(3);
    let mut call = Call::open(&server).await;
    call.create(create("k", "", 2)).await;
    assert!(call.next().await.created);
    let r = call.next().await;
    assert!(r.canceled);
    assert_eq!((r.watch_id, r.compact_revision), (0, 3));
    assert!(r.events.is_empty());
}

#[tokio::test]
async fn progress_requests_and_progress_notify() {
    let server = start(WatchServiceConfig {
        progress_interval: Duration::from_millis(200),
        ..WatchServiceConfig::default()
    })
    .await;
    server.put("x", "1");
    let mut call = Call::open(&server).await;
    let mut req = create("k", "", 0);
    req.progress_notify = true;
    call.create(req).await;
    assert!(call.next().await.created);

    call.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let r = call.next().await;
    assert_eq!(r.watch_id, -1);
    assert_eq!(r.header, Some(header(1)));
    assert!(r.events.is_empty() && !r.created && !r.canceled);

    // Periodic: empty responses for the quiet watcher at the current revision (a
    // tick may come before the write).
    server.put("y", "2");
    loop {
        let r = call.next().await;
        assert_eq!(r.watch_id, 0);
        assert!(r.events.is_empty() && !r.created && !r.canceled);
        let rev = r.header.unwrap().revision;
        assert!(rev == 1 || rev == 2);
        if rev == 2 {
            break;
        }
    }
    // A watcher that got events skips the next tick.
    server.put("k", "3");
    let r = call.next().await;
    assert_eq!(revs(&r.events), vec![3]);
}

#[tokio::test]
async fn large_responses_are_fragmented_for_watchers_that_ask() {
    let server = start(WatchServiceConfig {
        max_response_bytes: 1000,
        ..WatchServiceConfig::default()
    })
    .await;
    let mut call = Call::open(&server).await;
    let mut fragmented = create("t", "u", 0);
    fragmented.fragment = true;
    fragmented.watch_id = 1;
    call.create(fragmented).await;
    let mut whole = create("t", "u", 0);
    whole.watch_id = 2;
    call.create(whole).await;
    assert!(call.next().await.created);
    assert!(call.next().await.created);

    let value = "v".repeat(300);
    let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("t{i}").into_bytes()).collect();
    let ops: Vec<Op<'_>> = keys.iter().map(|k| Op::Put(k, value.as_bytes())).collect();
    let applied = server.history.txn(&ops);
    server.hub.notify(&applied);

    let mut pieces = Vec::new();
    let mut whole = None;
    while whole.is_none() || pieces.last().is_none_or(|p: &WatchResponse| p.fragment) {
        let r = call.next().await;
        match r.watch_id {
            1 => pieces.push(r),
            2 => whole = Some(r),
            other => panic!("unexpected watch id {other}"),
        }
    }
    let whole = whole.unwrap();
    assert!(!whole.fragment);
    assert_eq!(whole.events.len(), 10);
    assert!(pieces.len() > 1, "split into {} pieces", pieces.len());
    for (i, p) in pieces.iter().enumerate() {
        assert_eq!(p.fragment, i + 1 < pieces.len());
        assert_eq!(p.header, Some(header(1)));
        assert!(p.encoded_len() < 1000 || p.events.len() == 1);
    }
    let joined: Vec<Event> = pieces.into_iter().flat_map(|p| p.events).collect();
    assert_eq!(joined, whole.events);
}

#[test]
fn fragments_split_below_the_limit_and_keep_small_responses_whole() {
    let ev = |i: u8| Event {
        kv: Some(mnemo_proto::mvccpb::KeyValue {
            key: vec![i],
            value: vec![0; 100],
            mod_revision: 5,
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = WatchResponse {
        header: Some(header(5)),
        watch_id: 3,
        events: (0..10).map(ev).collect(),
        ..WatchResponse::default()
    };
    // Small enough: one piece.
    assert_eq!(fragments(resp.clone(), 100_000), vec![resp.clone()]);
    // One event: never split, even when over the limit.
    let single = WatchResponse {
        events: vec![ev(0)],
        ..resp.clone()
    };
    assert_eq!(fragments(single.clone(), 10), vec![single]);
    // Tiny limit: one event per piece.
    let pieces = fragments(resp.clone(), 10);
    assert_eq!(pieces.len(), 10);
    assert!(pieces[..9]
        .iter()
        .all(|p| p.fragment && p.events.len() == 1));
    assert!(!pieces[9].fragment);
    // A limit of about three events' worth.
    let pieces = fragments(resp.clone(), 400);
    assert!(pieces.iter().all(|p| p.encoded_len() < 400));
    assert_eq!(pieces.iter().map(|p| p.events.len()).sum::<usize>(), 10);
    assert!(pieces
        .iter()
        .all(|p| p.watch_id == 3 && p.header == resp.header));
}

#[tokio::test]
async fn ending_the_call_removes_its_watchers() {
    let server = start(WatchServiceConfig::default()).await;
    let mut call = Call::open(&server).await;
    call.create(create("a", "", 0)).await;
    call.create(create("b", "", 1)).await;
    assert!(call.next().await.created);
    assert!(call.next().await.created);
    assert_eq!(server.hub.stats().watchers, 2);

    // Half-close: the watchers stay and events still flow, as in etcd.
    let Call {
        requests,
        mut responses,
    } = call;
    drop(requests);
    server.put("a", "1");
    let r = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(revs(&r.events), vec![1]);
    assert_eq!(server.hub.stats().watchers, 2);

    // Gone: the watchers go too.
    drop(responses);
    for _ in 0..200 {
        if server.hub.stats().watchers == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("watchers still there: {:?}", server.hub.stats());
}
