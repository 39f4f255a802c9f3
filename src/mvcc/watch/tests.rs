//! Hub tests against the in-memory history.

use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::etcdserverpb::watch_create_request::FilterType;
use mnemo_proto::etcdserverpb::WatchCreateRequest;
use mnemo_proto::mvccpb::event::EventType;
use mnemo_proto::mvccpb::Event;

use super::fake::{FakeHistory, Op};
use super::*;

fn hub_with(history: &Arc<FakeHistory>, config: HubConfig) -> WatchHub {
    WatchHub::with_config(Arc::clone(history) as Arc<dyn History>, config)
}

fn watch_req(key: &[u8], range_end: &[u8], start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        start_revision: start,
        ..WatchCreateRequest::default()
    }
}

fn put(history: &FakeHistory, hub: &WatchHub, key: &str, value: &str) -> i64 {
    let applied = history.put(key.as_bytes(), value.as_bytes());
    hub.notify(&applied);
    applied.revision
}

async fn next(rx: &mut WatchReceiver) -> StreamItem {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an item within 10s")
        .expect("stream open")
}

async fn next_update(rx: &mut WatchReceiver) -> WatchUpdate {
    match next(rx).await {
        StreamItem::Update(u) => u,
        other => panic!("expected an update, got {other:?}"),
    }
}

/// Nothing more arrives for a moment.
async fn assert_quiet(rx: &mut WatchReceiver) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        panic!("expected nothing, got {item:?}");
    }
}

fn keys(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.kv.as_ref().unwrap().key).into_owned())
        .collect()
}

fn rev_of(e: &Event) -> i64 {
    e.kv.as_ref().unwrap().mod_revision
}

async fn created(rx: &mut WatchReceiver) -> i64 {
    match next(rx).await {
        StreamItem::Created { watch_id, .. } => watch_id,
        other => panic!("expected created, got {other:?}"),
    }
}

#[tokio::test]
async fn live_events_reach_watchers_by_key_range_prefix_and_from_key() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    let (stream, mut rx) = hub.new_stream();
    let single = stream.watch(&watch_req(b"foo", b"", 0)).unwrap();
    let prefix = stream.watch(&watch_req(b"foo/", b"foo0", 0)).unwrap();
    let from = stream.watch(&watch_req(b"m", b"\0", 0)).unwrap();
    let range = stream.watch(&watch_req(b"a", b"c", 0)).unwrap();
    assert_eq!((single, prefix, from, range), (0, 1, 2, 3));
    for id in 0..4 {
        assert_eq!(created(&mut rx).await, id);
    }

    put(&history, &hub, "foo", "1"); // rev 1: single
    put(&history, &hub, "foo/x", "2"); // rev 2: prefix
    put(&history, &hub, "zzz", "3"); // rev 3: from
    put(&history, &hub, "b", "4"); // rev 4: range
    put(&history, &hub, "c", "5"); // rev 5: nobody (range end is exclusive)
    let mut got = Vec::new();
    for _ in 0..4 {
        let u = next_update(&mut rx).await;
        assert_eq!(u.events.len(), 1);
        assert_eq!(u.revision, rev_of(&u.events[0]));
        got.push((u.watch_id, keys(&u.events)[0].clone(), u.revision));
    }
    assert_eq!(
        got,
        vec![
            (single, "foo".to_string(), 1),
            (prefix, "foo/x".to_string(), 2),
            (from, "zzz".to_string(), 3),
            (range, "b".to_string(), 4),
        ]
    );
    assert_quiet(&mut rx).await;
    assert_eq!(hub.revision(), 5);
}

#[tokio::test]
async fn filters_drop_event_kinds_and_prev_kv_is_only_kept_when_asked() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    let (stream, mut rx) = hub.new_stream();
    let mut no_put = watch_req(b"k", b"", 0);
    no_put.filters = vec![FilterType::Noput as i32];
    let mut no_delete = watch_req(b"k", b"", 0);
    no_delete.filters = vec![FilterType::Nodelete as i32];
    no_delete.prev_kv = true;
    let plain = watch_req(b"k", b"", 0);
    let no_put = stream.watch(&no_put).unwrap();
    let no_delete = stream.watch(&no_delete).unwrap();
    let plain = stream.watch(&plain).unwrap();
    for _ in 0..3 {
        created(&mut rx).await;
    }

    put(&history, &hub, "k", "v1");
    put(&history, &hub, "k", "v2");
    hub.notify(&history.delete(b"k"));

    let mut by_watcher: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for _ in 0..(2 + 3 + 1) {
        let u = next_update(&mut rx).await;
        by_watcher.entry(u.watch_id).or_default().extend(u.events);
    }
    assert_quiet(&mut rx).await;

    let types = |evs: &[Event]| evs.iter().map(|e| e.r#type).collect::<Vec<_>>();
    let put_t = EventType::Put as i32;
    let del_t = EventType::Delete as i32;
    assert_eq!(types(&by_watcher[&no_put]), vec![del_t]);
    assert_eq!(types(&by_watcher[&no_delete]), vec![put_t, put_t]);
    assert_eq!(types(&by_watcher[&plain]), vec![put_t, put_t, del_t]);
    // prev_kv only for the watcher that asked.
    let nd = &by_watcher[&no_delete];
    assert!(nd[0].prev_kv.is_none(), "first put has no previous value");
    assert_eq!(nd[1].prev_kv.as_ref().unwrap().value, b"v1");
    assert!(by_watcher[&plain].iter().all(|e| e.prev_kv.is_none()));
    assert!(by_watcher[&no_put].iter().all(|e| e.prev_kv.is_none()));
}

#[tokio::test]
async fn create_rules_ids_duplicates_empty_ranges_and_negative_revisions() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    put(&history, &hub, "x", "1");
    let (stream, mut rx) = hub.new_stream();

    let mut chosen = watch_req(b"a", b"", 0);
    chosen.watch_id = 1;
    assert_eq!(stream.watch(&chosen), Ok(1));
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Created {
            watch_id: 1,
            revision: 1
        }
    );
    // Duplicate id: refused with etcd's reason.
    assert_eq!(stream.watch(&chosen), Err(WatchError::DuplicateId));
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Rejected {
            reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
            revision: 1
        }
    );
    // Auto ids start at 0 and skip ids in use.
    assert_eq!(stream.watch(&watch_req(b"a", b"", 0)), Ok(0));
    assert_eq!(stream.watch(&watch_req(b"a", b"", 0)), Ok(2));
    assert_eq!(created(&mut rx).await, 0);
    assert_eq!(created(&mut rx).await, 2);
    // key >= range_end.
    assert_eq!(
        stream.watch(&watch_req(b"b", b"a", 0)),
        Err(WatchError::EmptyRange)
    );
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Rejected {
            reason: "mvcc: watcher range is empty".into(),
            revision: 1
        }
    );
    // Negative start revision: etcd answers with the compaction message.
    assert_eq!(
        stream.watch(&watch_req(b"a", b"", -5)),
        Err(WatchError::NegativeRevision)
    );
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Rejected {
            reason: "etcdserver: mvcc: required revision has been compacted".into(),
            revision: 1
        }
    );
    // Ids are per stream.
    let (other, mut other_rx) = hub.new_stream();
    assert_eq!(other.watch(&watch_req(b"a", b"", 0)), Ok(0));
    assert_eq!(created(&mut other_rx).await, 0);
}

#[tokio::test]
async fn cancel_stops_events_and_drops_queued_ones() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    let (stream, mut rx) = hub.new_stream();
    let mut req = watch_req(b"k", b"", 0);
    req.watch_id = 5;
    let id = stream.watch(&req).unwrap();
    created(&mut rx).await;
    put(&history, &hub, "k", "1");
    put(&history, &hub, "k", "2");
    // Both updates are queued; the cancel removes them and answers.
    assert!(stream.cancel(id));
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Canceled {
            watch_id: id,
            revision: 2,
            reason: String::new()
        }
    );
    put(&history, &hub, "k", "3");
    assert_quiet(&mut rx).await;
    // Unknown ids: no answer, as in etcd.
    assert!(!stream.cancel(id));
    assert!(!stream.cancel(77));
    assert_quiet(&mut rx).await;
    // The id can be used again.
    let mut again = watch_req(b"k", b"", 0);
    again.watch_id = id;
    assert_eq!(stream.watch(&again), Ok(id));
    assert_eq!(created(&mut rx).await, id);
    let applied = history.put(b"k", b"4");
    hub.notify(&applied);
    let u = next_update(&mut rx).await;
    assert_eq!((u.watch_id, u.revision), (id, 4));
    // A batch notified twice is delivered once.
    hub.notify(&applied);
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn past_start_catches_up_and_joins_live_without_gap_or_duplicate_under_writes() {
    let history = Arc::new(FakeHistory::default());
    // Small chunks and responses, so that the catch-up takes many rounds.
    let hub = Arc::new(hub_with(
        &history,
        HubConfig {
            stream_capacity: 4,
            catch_up_events: 7,
            max_revisions_per_response: 5,
        },
    ));
    for i in 0..200 {
        put(&history, &hub, &format!("k{}", i % 10), &i.to_string());
    }
    let total = 2000;
    let writer = {
        let (history, hub) = (Arc::clone(&history), Arc::clone(&hub));
        std::thread::spawn(move || {
            for i in 200..total {
                // Multi-event revisions too: a transaction on two keys.
                let applied = if i % 7 == 0 {
                    history.txn(&[Op::Put(b"k1", b"t"), Op::Put(b"k2", b"t")])
                } else {
                    history.put(format!("k{}", i % 10).as_bytes(), b"v")
                };
                hub.notify(&applied);
            }
        })
    };
    let (stream, mut rx) = hub.new_stream();
    let mut req = watch_req(b"k", b"l", 1);
    req.prev_kv = true;
    let id = stream.watch(&req).unwrap();
    created(&mut rx).await;

    let mut seen: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut last_header = 0;
    while seen.last().map_or(0, |s| s.0) < total {
        let u = next_update(&mut rx).await;
        assert_eq!(u.watch_id, id);
        assert!(u.revision >= last_header, "header revisions never go back");
        last_header = u.revision;
        for e in &u.events {
            assert!(rev_of(e) <= u.revision, "events are covered by the header");
            seen.push((rev_of(e), e.kv.as_ref().unwrap().key.clone()));
        }
    }
    writer.join().unwrap();
    let final_rev = history.current_revision();
    assert_eq!(final_rev, total);
    // Every revision exactly once and in order; two events for transaction revisions.
    let mut expected = Vec::new();
    for rev in 1..=total {
        let i = rev - 1;
        if i >= 200 && i % 7 == 0 {
            expected.push((rev, b"k1".to_vec()));
            expected.push((rev, b"k2".to_vec()));
        } else {
            expected.push((rev, format!("k{}", i % 10).into_bytes()));
        }
    }
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected);
    assert_quiet(&mut rx).await;
    assert_eq!(hub.stats().counts(), (1, 0), "the watcher ends synced");
}

#[tokio::test]
async fn one_revision_is_never_split_even_when_larger_than_a_read() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(
        &history,
        HubConfig {
            catch_up_events: 2,
            ..HubConfig::default()
        },
    );
    put(&history, &hub, "a", "0");
    let ops: Vec<Vec<u8>> = (0..5).map(|i| format!("t{i}").into_bytes()).collect();
    let txn: Vec<Op<'_>> = ops.iter().map(|k| Op::Put(k, b"v")).collect();
    hub.notify(&history.txn(&txn)); // rev 2: five events
    put(&history, &hub, "t9", "1"); // rev 3
    let (stream, mut rx) = hub.new_stream();
    stream.watch(&watch_req(b"t", b"u", 1)).unwrap();
    created(&mut rx).await;
    let mut updates = Vec::new();
    let mut got = 0;
    while got < 6 {
        let u = next_update(&mut rx).await;
        got += u.events.len();
        updates.push(u);
    }
    for u in &updates {
        let revs: BTreeSet<i64> = u.events.iter().map(rev_of).collect();
        if revs.contains(&2) {
            assert_eq!(u.events.iter().filter(|e| rev_of(e) == 2).count(), 5);
        }
    }
    // Live: a transaction's events arrive together.
    hub.notify(&history.txn(&txn));
    let u = next_update(&mut rx).await;
    assert_eq!(u.events.len(), 5);
    assert_eq!(u.revision, 4);
}

#[tokio::test]
async fn future_start_revision_waits_for_it() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    put(&history, &hub, "k", "1");
    let (stream, mut rx) = hub.new_stream();
    stream.watch(&watch_req(b"k", b"", 4)).unwrap();
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Created {
            watch_id: 0,
            revision: 1
        }
    );
    put(&history, &hub, "k", "2");
    put(&history, &hub, "k", "3");
    assert_quiet(&mut rx).await;
    put(&history, &hub, "k", "4");
    put(&history, &hub, "k", "5");
    assert_eq!(next_update(&mut rx).await.revision, 4);
    assert_eq!(next_update(&mut rx).await.revision, 5);
}

#[tokio::test]
async fn compacted_start_revision_cancels_with_the_compact_revision() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    for i in 0..10 {
        put(&history, &hub, "k", &i.to_string());
    }
    history.compact(6);
    let (stream, mut rx) = hub.new_stream();
    let mut req = watch_req(b"k", b"", 3);
    req.watch_id = 5;
    let id = stream.watch(&req).unwrap();
    assert_eq!(created(&mut rx).await, id);
    assert_eq!(
        next(&mut rx).await,
        StreamItem::Compacted {
            watch_id: id,
            compact_revision: 6
        }
    );
    assert_eq!(hub.stats().counts(), (0, 0));
    // The id stays taken until the client cancels it, as in etcd.
    let mut same = watch_req(b"k", b"", 0);
    same.watch_id = id;
    assert_eq!(stream.watch(&same), Err(WatchError::DuplicateId));
    assert!(matches!(next(&mut rx).await, StreamItem::Rejected { .. }));
    assert!(stream.cancel(id));
    assert!(matches!(next(&mut rx).await, StreamItem::Canceled { .. }));
    // After the compaction point, history is still served.
    stream.watch(&watch_req(b"k", b"", 7)).unwrap();
    created(&mut rx).await;
    let u = next_update(&mut rx).await;
    assert_eq!(
        u.events.iter().map(rev_of).collect::<Vec<_>>(),
        vec![7, 8, 9, 10]
    );
}

#[tokio::test]
async fn slow_watcher_never_blocks_notify_and_later_gets_everything_in_order() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(
        &history,
        HubConfig {
            stream_capacity: 2,
            ..HubConfig::default()
        },
    );
    let (slow, mut slow_rx) = hub.new_stream();
    let (fast, mut fast_rx) = hub.new_stream();
    slow.watch(&watch_req(b"k", b"\0", 0)).unwrap();
    fast.watch(&watch_req(b"k", b"\0", 0)).unwrap();
    created(&mut slow_rx).await;
    created(&mut fast_rx).await;

    // Nobody reads the slow stream while 3000 revisions are notified; notify returns
    // every time, and the fast stream's reader keeps up concurrently.
    let n = 3000;
    let fast_reader = tokio::spawn(async move {
        let mut revs = Vec::new();
        while revs.len() < n {
            let u = next_update(&mut fast_rx).await;
            revs.extend(u.events.iter().map(rev_of));
        }
        revs
    });
    for i in 0..n {
        put(&history, &hub, &format!("k{}", i % 3), "v");
    }
    let (watchers, unsynced) = hub.stats().counts();
    assert_eq!(watchers, 2);
    assert!(unsynced >= 1, "the slow watcher was moved aside");
    let expected: Vec<i64> = (1..=n as i64).collect();
    assert_eq!(fast_reader.await.unwrap(), expected);

    // Now the slow reader drains: every event, in order, once.
    let mut revs = Vec::new();
    while revs.len() < n {
        let u = next_update(&mut slow_rx).await;
        revs.extend(u.events.iter().map(rev_of));
    }
    assert_eq!(revs, expected);
    assert_quiet(&mut slow_rx).await;
    // Caught up: live again.
    put(&history, &hub, "k", "live");
    assert_eq!(next_update(&mut slow_rx).await.revision, n as i64 + 1);
    assert_eq!(hub.stats().counts(), (2, 0));
}

#[tokio::test]
async fn progress_requests_answer_at_once_when_synced_and_later_when_not() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(
        &history,
        HubConfig {
            catch_up_events: 1,
            max_revisions_per_response: 1,
            stream_capacity: 1,
        },
    );
    for i in 0..5 {
        put(&history, &hub, "k", &i.to_string());
    }
    // No watchers: answered at once.
    let (stream, mut rx) = hub.new_stream();
    stream.request_progress();
    let u = next_update(&mut rx).await;
    assert_eq!((u.watch_id, u.revision, u.events.len()), (-1, 5, 0));

    // A watcher from revision 1 catches up one revision per response through a queue
    // of one; the progress response comes after all five.
    stream.watch(&watch_req(b"k", b"", 1)).unwrap();
    stream.request_progress();
    created(&mut rx).await;
    let mut revs = Vec::new();
    loop {
        let u = next_update(&mut rx).await;
        if u.watch_id == INVALID_WATCH_ID {
            assert_eq!(u.revision, 5);
            assert!(u.events.is_empty());
            break;
        }
        revs.extend(u.events.iter().map(rev_of));
    }
    assert_eq!(revs, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn progress_tick_reports_quiet_synced_watchers_only() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    let (stream, mut rx) = hub.new_stream();
    let mut req = watch_req(b"a", b"", 0);
    req.progress_notify = true;
    let quiet = stream.watch(&req).unwrap();
    req.key = b"b".to_vec();
    let busy = stream.watch(&req).unwrap();
    let silent = stream.watch(&watch_req(b"c", b"", 0)).unwrap(); // no progress_notify
    for _ in 0..3 {
        created(&mut rx).await;
    }
    put(&history, &hub, "b", "1");
    assert_eq!(next_update(&mut rx).await.watch_id, busy);
    stream.progress_tick();
    let u = next_update(&mut rx).await;
    assert_eq!((u.watch_id, u.revision), (quiet, 1));
    assert!(u.events.is_empty());
    assert_quiet(&mut rx).await;
    // Next tick: both were quiet since the last one.
    stream.progress_tick();
    let mut ids = vec![
        next_update(&mut rx).await.watch_id,
        next_update(&mut rx).await.watch_id,
    ];
    ids.sort_unstable();
    assert_eq!(ids, vec![quiet, busy]);
    assert_quiet(&mut rx).await;
    let _ = silent;
}

#[tokio::test]
async fn dropping_a_stream_removes_its_watchers() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    let (stream, mut rx) = hub.new_stream();
    stream.watch(&watch_req(b"k", b"", 0)).unwrap();
    stream.watch(&watch_req(b"k", b"", 1)).unwrap();
    assert_eq!(hub.stats().counts().0, 2);
    drop(stream);
    assert_eq!(hub.stats().counts(), (0, 0));
    assert!(rx.recv().await.is_none(), "the receiver ends");
    put(&history, &hub, "k", "1");
    let st = hub.shared.state.lock();
    assert!(st.synced.is_empty() && st.streams.is_empty());
}

#[tokio::test]
async fn resync_after_restore_catches_synced_watchers_up_from_history() {
    let history = Arc::new(FakeHistory::default());
    let hub = hub_with(&history, HubConfig::default());
    let (stream, mut rx) = hub.new_stream();
    stream.watch(&watch_req(b"k", b"", 0)).unwrap();
    created(&mut rx).await;
    // The store moves on without notify (a snapshot was installed).
    history.put(b"k", b"1");
    history.put(b"x", b"2");
    history.put(b"k", b"3");
    hub.resync_all();
    let mut revs = Vec::new();
    while revs.len() < 2 {
        revs.extend(next_update(&mut rx).await.events.iter().map(rev_of));
    }
    assert_eq!(revs, vec![1, 3]);
    put(&history, &hub, "k", "4");
    assert_eq!(next_update(&mut rx).await.revision, 4);
}

/// A small deterministic generator for the mixed test below.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_watchers_with_slow_readers_see_exactly_their_history() {
    for seed in 1..=6 {
        let moved_aside = mixed_run(seed).await;
        assert!(
            moved_aside > 0,
            "seed {seed}: no watcher was ever moved aside"
        );
    }
}

/// Returns how many times a watcher was moved aside.
async fn mixed_run(seed: u64) -> u64 {
    let history = Arc::new(FakeHistory::default());
    let hub = Arc::new(hub_with(
        &history,
        HubConfig {
            stream_capacity: 3,
            catch_up_events: 16,
            max_revisions_per_response: 8,
        },
    ));
    let mut rng = Lcg(seed);
    let write = |rng: &mut Lcg| {
        let k = format!("k{}", rng.next(10));
        let applied = match rng.next(10) {
            0 => history.delete(k.as_bytes()),
            1 => history.txn(&[
                Op::Put(k.as_bytes(), b"t"),
                Op::Put(b"k5", b"t"),
                Op::Delete(b"k7"),
            ]),
            _ => history.put(k.as_bytes(), b"v"),
        };
        hub.notify(&applied);
    };
    for _ in 0..300 {
        write(&mut rng);
    }
    let total_writes = 3000;
    let (final_tx, final_rx) = tokio::sync::watch::channel(0i64);

    // (key, range_end, start, filters, prev_kv)
    type Spec = (&'static [u8], &'static [u8], i64, Vec<i32>, bool);
    let specs: Vec<Spec> = vec![
        (b"k", b"l", 1, vec![], true),
        (b"k3", b"", 0, vec![], false),
        (b"k2", b"k6", 50, vec![FilterType::Nodelete as i32], true),
        (b"k5", b"\0", 0, vec![FilterType::Noput as i32], false),
        (b"k", b"l", 900, vec![], false), // in the future
        (b"k1", b"", 120, vec![], true),
        (b"k0", b"k9", 0, vec![], true),
        (b"k", b"l", 299, vec![FilterType::Noput as i32], true),
    ];
    let mut readers = Vec::new();
    for (i, (key, end, start, filters, prev_kv)) in specs.into_iter().enumerate() {
        let (stream, mut rx) = hub.new_stream();
        let req = WatchCreateRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            start_revision: start,
            filters: filters.clone(),
            prev_kv,
            ..WatchCreateRequest::default()
        };
        stream.watch(&req).unwrap();
        let created_at = match next(&mut rx).await {
            StreamItem::Created { revision, .. } => revision,
            other => panic!("{other:?}"),
        };
        let seed = seed * 1000 + i as u64;
        let mut final_rx = final_rx.clone();
        readers.push(tokio::spawn(async move {
            let mut rng = Lcg(seed);
            let mut got: Vec<Event> = Vec::new();
            let mut header = 0;
            let mut requested = false;
            // Read until the progress response asked for after the last write.
            loop {
                tokio::select! {
                    item = tokio::time::timeout(Duration::from_secs(10), rx.recv()) => {
                        let Ok(Some(StreamItem::Update(u))) = item else {
                            panic!("expected an update, got {item:?}");
                        };
                        assert!(u.revision >= header);
                        header = u.revision;
                        if u.watch_id == INVALID_WATCH_ID {
                            assert!(requested && u.events.is_empty());
                            assert!(u.revision >= *final_rx.borrow());
                            break;
                        }
                        got.extend(u.events);
                        if rng.next(4) == 0 {
                            tokio::time::sleep(Duration::from_millis(rng.next(3))).await;
                        }
                    }
                    _ = final_rx.changed(), if !requested => {
                        requested = true;
                        stream.request_progress();
                    }
                }
            }
            drop(stream);
            (req, created_at, got)
        }));
    }
    let writer = {
        let (history, hub) = (Arc::clone(&history), Arc::clone(&hub));
        std::thread::spawn(move || {
            let mut rng = Lcg(seed * 31 + 11);
            let mut done = 0;
            while done < total_writes {
                let k = format!("k{}", rng.next(10));
                let applied = match rng.next(10) {
                    0 => history.delete(k.as_bytes()),
                    1 => history.txn(&[Op::Put(k.as_bytes(), b"t"), Op::Delete(b"k7")]),
                    _ => history.put(k.as_bytes(), b"v"),
                };
                if !applied.events.is_empty() {
                    done += 1;
                }
                hub.notify(&applied);
            }
        })
    };
    writer.join().unwrap();
    let final_rev = history.current_revision();
    final_tx.send(final_rev).unwrap();
    let log = history.log();
    for reader in readers {
        let (req, created_at, got) = reader.await.unwrap();
        let range = KeyRange::from_request(&req.key, &req.range_end).unwrap();
        let from = if req.start_revision == 0 {
            created_at + 1
        } else {
            req.start_revision
        };
        let no_put = req.filters.contains(&(FilterType::Noput as i32));
        let no_delete = req.filters.contains(&(FilterType::Nodelete as i32));
        let expected: Vec<Event> = log
            .iter()
            .filter(|e| {
                let kv = e.kv.as_ref().unwrap();
                let put = e.r#type == EventType::Put as i32;
                kv.mod_revision >= from
                    && range.contains(&kv.key)
                    && !(put && no_put)
                    && (put || !no_delete)
            })
            .map(|e| Event {
                prev_kv: if req.prev_kv { e.prev_kv.clone() } else { None },
                ..e.clone()
            })
            .collect();
        assert_eq!(got.len(), expected.len(), "watcher {req:?}");
        assert!(got == expected, "watcher {req:?} saw a different history");
    }
    hub.stats().moved_aside
}

/// A history that commits and notifies a write while the sync thread reads it: before
/// the read on even calls (the read sees a revision the hub has not been told about
/// when `current_revision` was asked), after it on odd ones (the hub moves past what
/// the read saw before the sync thread takes the lock).
struct RacyHistory {
    inner: Arc<FakeHistory>,
    hub: std::sync::OnceLock<std::sync::Weak<WatchHub>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl RacyHistory {
    fn write(&self) {
        if let Some(hub) = self.hub.get().and_then(std::sync::Weak::upgrade) {
            hub.notify(&self.inner.put(b"k", b"racy"));
        }
    }
}

impl History for RacyHistory {
    fn current_revision(&self) -> i64 {
        self.inner.current_revision()
    }

    fn compact_revision(&self) -> i64 {
        self.inner.compact_revision()
    }

    fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> crate::error::Result<Vec<Event>> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call < 40 && call.is_multiple_of(2) {
            self.write();
        }
        let events = self.inner.events_since(start_rev, key, range_end, limit);
        if call < 40 && !call.is_multiple_of(2) {
            self.write();
        }
        events
    }
}

#[tokio::test]
async fn catch_up_handles_writes_that_land_during_the_read() {
    let inner = Arc::new(FakeHistory::default());
    let racy = Arc::new(RacyHistory {
        inner: Arc::clone(&inner),
        hub: std::sync::OnceLock::new(),
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let hub = Arc::new(WatchHub::with_config(
        Arc::clone(&racy) as Arc<dyn History>,
        HubConfig {
            catch_up_events: 3,
            ..HubConfig::default()
        },
    ));
    racy.hub.set(Arc::downgrade(&hub)).unwrap();
    for i in 0..30 {
        put(&inner, &hub, "k", &i.to_string());
    }
    let (stream, mut rx) = hub.new_stream();
    stream.watch(&watch_req(b"k", b"", 1)).unwrap();
    created(&mut rx).await;
    // 30 writes before, more during the catch-up: read until nothing more comes.
    let mut revs = Vec::new();
    while let Ok(item) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        let Some(StreamItem::Update(u)) = item else {
            panic!("expected an update, got {item:?}");
        };
        revs.extend(u.events.iter().map(rev_of));
    }
    let last = inner.current_revision();
    assert!(last > 40, "writes raced the reads: {last}");
    assert_eq!(revs, (1..=last).collect::<Vec<i64>>());
    assert_eq!(hub.stats().counts(), (1, 0));
}
