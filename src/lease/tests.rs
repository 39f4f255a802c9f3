use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;

fn lessor() -> Lessor {
    Lessor::new(LessorConfig {
        min_ttl: 2,
        ..LessorConfig::default()
    })
}

fn info(id: i64, ttl: i64) -> LeaseInfo {
    LeaseInfo {
        id,
        ttl,
        remaining_ttl: 0,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn min_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
    assert_eq!(min_ttl(100, 1000), 2); // etcd's defaults: 1.5 s → 2
    assert_eq!(min_ttl(100, 500), 1); // 5 ticks → 7 ticks → 0.7 s → 1
    assert_eq!(min_ttl(50, 1000), 2); // 20 ticks → 30 → 1.5 s
    assert_eq!(min_ttl(250, 5000), 8); // 20 ticks → 30 → 7.5 s
    assert_eq!(min_ttl(300, 1000), 2); // 3 ticks → 4 (integer) → 1.2 s
    assert_eq!(min_ttl(0, 0), 0);
    assert_eq!(LessorConfig::default().min_ttl, 2);
}

#[test]
fn grant_raises_to_the_minimum_and_refuses_like_etcd() {
    let l = lessor();
    assert_eq!(l.grant(1, 1), Ok(2));
    assert_eq!(l.grant(2, 60), Ok(60));
    assert_eq!(l.grant(1, 60), Err(Error::LeaseExist));
    assert_eq!(l.grant(0, 60), Err(Error::LeaseNotFound));
    assert_eq!(l.grant(3, MAX_LEASE_TTL + 1), Err(Error::LeaseTtlTooLarge));
    assert_eq!(l.grant(3, MAX_LEASE_TTL), Ok(MAX_LEASE_TTL));
    assert_eq!(l.len(), 3);
    assert_eq!(l.revoke(2), Ok(()));
    assert_eq!(l.revoke(2), Err(Error::LeaseNotFound));
}

#[test]
fn leases_expire_in_order_and_are_handed_out_again_only_after_the_retry() {
    let l = lessor();
    let t0 = Instant::now();
    l.promote_at(Vec::new(), Duration::ZERO, t0);
    l.grant_at(1, 5, t0).unwrap();
    l.grant_at(2, 3, t0).unwrap();
    l.grant_at(3, 10, t0).unwrap();
    assert!(l.expired_at(t0 + ms(2900)).is_empty());
    assert_eq!(l.expired_at(t0 + ms(4000)), vec![2]);
    // 2's revoke is in flight: not again before the retry interval (3 s).
    assert_eq!(l.expired_at(t0 + ms(6000)), vec![1]);
    assert!(l.expired_at(t0 + ms(6500)).is_empty());
    // 2 was never revoked: handed out again.
    assert_eq!(l.expired_at(t0 + ms(7100)), vec![2]);
    l.revoke(2).unwrap();
    l.revoke(1).unwrap();
    assert!(l.expired_at(t0 + ms(9999)).is_empty());
    assert_eq!(l.expired_at(t0 + ms(30_000)), vec![3]);
    assert!(l.expired_at(t0 + ms(31_000)).is_empty());
}

#[test]
fn expired_batches_are_bounded() {
    let l = Lessor::new(LessorConfig {
        min_ttl: 1,
        max_expired_per_batch: 3,
        ..LessorConfig::default()
    });
    let t0 = Instant::now();
    l.promote_at(Vec::new(), Duration::ZERO, t0);
    for id in 1..=7 {
        l.grant_at(id, 1, t0).unwrap();
    }
    let later = t0 + ms(1500);
    let mut all = Vec::new();
    for expect in [3, 3, 1, 0] {
        let batch = l.expired_at(later);
        assert_eq!(batch.len(), expect);
        all.extend(batch);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=7).collect::<Vec<_>>());
}

#[test]
fn keep_alive_extends_only_live_leases_and_only_on_the_leader() {
    let l = lessor();
    let t0 = Instant::now();
    l.grant_at(1, 5, t0).unwrap();
    assert_eq!(l.keep_alive_at(1, t0), Err(Error::NotLeader));
    l.promote_at(vec![info(1, 5)], Duration::ZERO, t0);
    assert_eq!(l.keep_alive_at(1, t0 + ms(4000)), Ok(5));
    assert!(
        l.expired_at(t0 + ms(6000)).is_empty(),
        "extended to t0 + 9 s"
    );
    assert_eq!(l.time_to_live_at(1, t0 + ms(6000)), Some((3, 5)));
    assert_eq!(l.expired_at(t0 + ms(9000)), vec![1]);
    // Expired, revoke pending: the keep-alive does not bring it back.
    assert_eq!(l.keep_alive_at(1, t0 + ms(9500)), Err(Error::LeaseNotFound));
    assert_eq!(l.time_to_live_at(1, t0 + ms(10_500)), Some((-1, 5)));
    assert_eq!(l.keep_alive_at(2, t0), Err(Error::LeaseNotFound));
    assert_eq!(l.time_to_live(2), None);
}

#[test]
fn promote_refreshes_every_lease_and_demote_stops_the_clock() {
    let l = lessor();
    let t0 = Instant::now();
    // As a follower the leases never expire, however old.
    l.apply_at(
        &Applied {
            leases_granted: vec![info(1, 5), info(2, 1)],
            ..Applied::default()
        },
        t0,
    );
    assert!(l.expired_at(t0 + Duration::from_secs(3600)).is_empty());
    assert_eq!(
        l.time_to_live_at(2, t0),
        Some((2, 2)),
        "raised to the minimum"
    );

    // Elected an hour later: expiries restart from the promotion, plus `extend`.
    let t1 = t0 + Duration::from_secs(3600);
    let checkpointed = LeaseInfo {
        id: 3,
        ttl: 100,
        remaining_ttl: 4,
    };
    l.promote_at(
        vec![info(1, 5), info(2, 1), checkpointed],
        Duration::from_secs(1),
        t1,
    );
    assert!(l.is_primary());
    assert!(l.expired_at(t1 + ms(2900)).is_empty());
    assert_eq!(l.expired_at(t1 + ms(3000)), vec![2]);
    assert_eq!(
        l.expired_at(t1 + ms(5000)),
        vec![3],
        "checkpointed remaining TTL"
    );
    l.revoke(3).unwrap();
    // 2's revoke was not applied by its retry time: handed out again.
    assert_eq!(l.expired_at(t1 + ms(6000)), vec![1, 2]);

    l.demote();
    assert!(!l.is_primary());
    assert!(l.expired_at(t1 + Duration::from_secs(3600)).is_empty());
    assert_eq!(l.keep_alive_at(1, t1), Err(Error::NotLeader));
    assert_eq!(l.time_to_live_at(1, t1), Some((5, 5)));

    // Revokes applied from raft remove leases.
    l.apply_at(
        &Applied {
            leases_revoked: vec![1, 99],
            ..Applied::default()
        },
        t1,
    );
    assert_eq!(l.len(), 1);
}

#[test]
fn promote_spreads_a_pile_up_of_expiries() {
    let l = lessor();
    let t0 = Instant::now();
    let n = 3000;
    l.promote_at(
        (1..=n).map(|id| info(id, 10)).collect(),
        Duration::from_secs(2),
        t0,
    );
    // Nothing expires before now + extend + TTL.
    assert!(l.expired_at(t0 + ms(11_999)).is_empty());
    // Then no more than the target rate (three quarters of 1000/s, rounding aside)
    // per second.
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    let mut seen = 0;
    let mut t = t0 + Duration::from_secs(12);
    while seen < n as usize {
        let batch = l.expired_at(t);
        for id in &batch {
            l.revoke(*id).unwrap();
        }
        *per_second.entry((t - t0).as_secs()).or_default() += batch.len();
        seen += batch.len();
        t += ms(100);
        assert!(t < t0 + Duration::from_secs(30), "all expire within 30 s");
    }
    assert!(
        per_second.values().all(|&c| c <= 800),
        "per second: {per_second:?}"
    );
}

#[tokio::test]
async fn next_expired_wakes_for_leases_granted_while_waiting() {
    let l = Arc::new(lessor());
    l.promote(Vec::new(), Duration::ZERO);
    let waiter = {
        let l = Arc::clone(&l);
        tokio::spawn(async move { l.next_expired().await })
    };
    tokio::time::sleep(ms(50)).await;
    assert!(!waiter.is_finished());
    // A lease granted with a clock long past: already expired.
    l.grant_at(7, 5, Instant::now() - Duration::from_secs(60))
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(got, vec![7]);
}

#[tokio::test]
async fn next_expired_sleeps_until_the_earliest_expiry() {
    let l = Lessor::new(LessorConfig {
        min_ttl: 1,
        ..LessorConfig::default()
    });
    l.promote(Vec::new(), Duration::ZERO);
    let start = Instant::now();
    l.grant(9, 1).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), l.next_expired())
        .await
        .expect("expires within 5 s");
    assert_eq!(got, vec![9]);
    assert!(start.elapsed() >= Duration::from_secs(1));
}
