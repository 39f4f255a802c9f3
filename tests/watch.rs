//! The Watch service against the real binary: live and historical events, filters,
//! prev_kv, cancel, progress, and a watch from a compacted revision.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::MnemoProcess;
use mnemo_proto::etcdserverpb::watch_create_request::FilterType;
use mnemo_proto::etcdserverpb::watch_request::RequestUnion;
use mnemo_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use mnemo_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl Stream {
    async fn open(m: &MnemoProcess) -> Stream {
        let (tx, rx) = mpsc::channel(8);
        let rx = m
            .watch()
            .await
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Stream { tx, rx }
    }

    async fn send(&self, r: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .unwrap();
    }

    async fn create(&mut self, c: WatchCreateRequest) -> i64 {
        self.send(RequestUnion::CreateRequest(c)).await;
        let r = self.next().await;
        assert!(r.created, "{r:?}");
        r.watch_id
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("no watch response within 10 s")
            .unwrap()
            .expect("the watch stream ended")
    }
}

fn create(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        range_end: end.into(),
        start_revision: start,
        ..Default::default()
    }
}

async fn put(m: &MnemoProcess, k: &str, v: &str) -> i64 {
    let r = m
        .kv()
        .await
        .put(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.header.unwrap().revision
}

#[tokio::test]
async fn live_and_historical_events_with_filters_and_prev_kv() {
    let m = MnemoProcess::start(&[]);
    let first = put(&m, "w/a", "1").await;
    put(&m, "w/b", "2").await;

    let mut s = Stream::open(&m).await;
    // From the first revision: history, then live.
    let hist = s.create(create("w/", "w0", first)).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let r = s.next().await;
        assert_eq!(r.watch_id, hist);
        seen.extend(r.events.into_iter().map(|e| e.kv.unwrap().key));
    }
    assert_eq!(seen, vec![b"w/a".to_vec(), b"w/b".to_vec()]);

    // A second watch on the same stream: deletes only, with prev_kv.
    let mut c = create("w/a", "", 0);
    c.filters = vec![FilterType::Noput as i32];
    c.prev_kv = true;
    let dels = s.create(c).await;

    put(&m, "w/a", "3").await;
    let r = s.next().await;
    assert_eq!(r.watch_id, hist);
    assert_eq!(r.events[0].kv.as_ref().unwrap().value, b"3");

    m.kv()
        .await
        .delete_range(DeleteRangeRequest {
            key: b"w/a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got_hist = false;
    let mut got_del = false;
    while !(got_hist && got_del) {
        let r = s.next().await;
        let e = &r.events[0];
        assert_eq!(e.r#type, EventType::Delete as i32);
        if r.watch_id == dels {
            assert_eq!(e.prev_kv.as_ref().unwrap().value, b"3");
            got_del = true;
        } else {
            assert_eq!(r.watch_id, hist);
            assert!(
                e.prev_kv.is_none(),
                "prev_kv sent to a watcher that did not ask"
            );
            got_hist = true;
        }
    }

    // Cancel, then progress: the stream answers with the current revision.
    s.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: hist,
    }))
    .await;
    let r = s.next().await;
    assert!(r.canceled);
    assert_eq!(r.watch_id, hist);
    let rev = put(&m, "other", "x").await;
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let r = s.next().await;
    assert!(r.events.is_empty());
    assert_eq!(r.header.unwrap().revision, rev);
}

#[tokio::test]
async fn a_watch_below_the_compaction_is_canceled_with_the_compact_revision() {
    let m = MnemoProcess::start(&[]);
    for i in 0..5 {
        put(&m, "c", &i.to_string()).await;
    }
    m.kv()
        .await
        .compact(CompactionRequest {
            revision: 4,
            physical: true,
        })
        .await
        .unwrap();
    let mut s = Stream::open(&m).await;
    s.send(RequestUnion::CreateRequest(create("c", "", 2)))
        .await;
    let mut r = s.next().await;
    if r.created && !r.canceled {
        r = s.next().await;
    }
    assert!(r.canceled, "{r:?}");
    assert_eq!(r.compact_revision, 4);
}
