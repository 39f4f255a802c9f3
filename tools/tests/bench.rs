//! mnemo-bench against real members: every workload runs, makes exactly the requests
//! its flags ask for, and leaves the server in the state those requests imply.

#![allow(clippy::unwrap_used)]

mod member;

use clap::Parser;
use member::Member;
use mnemo_proto::etcdserverpb::{LeaseLeasesRequest, RangeRequest};
use mnemo_tools::bench::{run, Cli, Outcome};

async fn bench(m: &Member, args: &[&str]) -> Outcome {
    let ep = m.client_url.clone();
    let argv = ["mnemo-bench", "--no-progress", "--endpoints", &ep]
        .into_iter()
        .chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).unwrap();
    run(&cli.global, &cli.workload).await.unwrap()
}

async fn count_and_revision(m: &Member) -> (i64, i64) {
    let r = m
        .kv()
        .await
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (r.count, r.header.unwrap().revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_workloads_make_the_requests_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::start(dir.path(), &[]).await;

    let o = bench(
        &m,
        &[
            "--clients",
            "4",
            "--conns",
            "2",
            "put",
            "--total",
            "300",
            "--key-space-size",
            "100",
            "--sequential-keys",
        ],
    )
    .await;
    let s = &o.summaries[0];
    assert_eq!((s.requests, s.errors), (300, 0));
    assert!(s.percentile(50.0) > 0.0 && s.slowest >= s.percentile(99.0));
    assert_eq!(count_and_revision(&m).await, (100, 301));

    let o = bench(
        &m,
        &[
            "--clients",
            "2",
            "txn-put",
            "--txn-ops",
            "4",
            "--total",
            "50",
            "--key-space-size",
            "100",
        ],
    )
    .await;
    assert_eq!((o.summaries[0].requests, o.summaries[0].errors), (50, 0));
    assert_eq!(count_and_revision(&m).await.1, 351, "one revision per txn");

    let o = bench(
        &m,
        &[
            "--clients",
            "3",
            "range",
            "\u{0}",
            "--prefix",
            "--consistency",
            "s",
            "--total",
            "40",
        ],
    )
    .await;
    assert_eq!((o.summaries[0].requests, o.summaries[0].errors), (40, 0));
    let o = bench(
        &m,
        &[
            "--target-leader",
            "range",
            "a",
            "b",
            "--limit",
            "5",
            "--total",
            "10",
        ],
    )
    .await;
    assert_eq!((o.summaries[0].requests, o.summaries[0].errors), (10, 0));

    let o = bench(
        &m,
        &[
            "--clients",
            "4",
            "txn-mixed",
            "--rw-ratio",
            "3",
            "--total",
            "100",
            "--key-space-size",
            "100",
        ],
    )
    .await;
    let (reads, writes) = (&o.summaries[0], &o.summaries[1]);
    assert_eq!((reads.requests, writes.requests), (75, 25));
    assert_eq!(reads.errors + writes.errors, 0);
    assert_eq!(count_and_revision(&m).await.1, 351 + 25);

    let json = o.json();
    assert_eq!(json["runs"][0]["name"], "txn-mixed reads");
    assert!(json["runs"][1]["percentiles_secs"]["p99.9"].is_number());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_workloads_deliver_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::start(dir.path(), &[]).await;
    let o = bench(
        &m,
        &[
            "watch",
            "--streams",
            "2",
            "--watch-per-stream",
            "3",
            "--watched-key-total",
            "2",
            "--put-total",
            "20",
            "--put-rate",
            "500",
        ],
    )
    .await;
    let (create, delivery) = (&o.summaries[0], &o.summaries[1]);
    assert_eq!((create.requests, create.errors), (6, 0));
    // Every put reaches the three watchers of its key.
    assert_eq!((delivery.requests, delivery.errors), (60, 0));

    let o = bench(
        &m,
        &[
            "watch-latency",
            "--streams",
            "2",
            "--watchers-per-stream",
            "2",
            "--put-total",
            "10",
            "--put-rate",
            "500",
        ],
    )
    .await;
    assert_eq!((o.summaries[0].requests, o.summaries[0].errors), (40, 0));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keepalive_and_mvcc_put() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::start(dir.path(), &[]).await;
    let o = bench(&m, &["--clients", "2", "lease-keepalive", "--total", "20"]).await;
    assert_eq!((o.summaries[0].requests, o.summaries[0].errors), (20, 0));
    let leases = m
        .lease()
        .await
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(leases.leases.is_empty(), "the bench revokes its leases");
    m.stop().await;

    let data = dir.path().join("mvcc");
    let o = bench(
        &m_dummy(),
        &[
            "mvcc",
            "put",
            "--total",
            "1000",
            "--batch",
            "100",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!((o.summaries[0].requests, o.summaries[0].errors), (10, 0));
    let store = mnemo::mvcc::Store::open(&data.join("db")).unwrap();
    assert_eq!(store.current_revision(), 1001);
}

/// A member that is never started: `mvcc` runs without a server.
fn m_dummy() -> Member {
    Member::unstarted("http://127.0.0.1:1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_runs_both_sides_and_gives_ratios() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Member::start(da.path(), &[]).await;
    let b = Member::start(db.path(), &[]).await;
    let argv = [
        "mnemo-bench",
        "--no-progress",
        "--clients",
        "2",
        "compare",
        "--a",
        &a.client_url,
        "--a-name",
        "one",
        "--b",
        &b.client_url,
        "--b-name",
        "two",
        "put",
        "--total",
        "50",
    ];
    let cli = Cli::try_parse_from(argv).unwrap();
    let o = run(&cli.global, &cli.workload).await.unwrap();
    assert_eq!(o.summaries.len(), 2);
    assert_eq!(o.summaries[0].name, "one: put");
    assert_eq!(o.summaries[1].name, "two: put");
    let json = o.json();
    let ratio = json["compare"][0]["requests/sec"]["ratio"]
        .as_f64()
        .unwrap();
    assert!(ratio > 0.0);
    assert!(o.text().contains("two/one"), "{}", o.text());
    assert_eq!(count_and_revision(&a).await.1, 51);
    assert_eq!(count_and_revision(&b).await.1, 51);
    a.stop().await;
    b.stop().await;
}
