//! The leader's lease clock (etcd's lease/lessor.go, minus storage: leases are
//! granted and revoked through raft, and the table lives in the MVCC store).
//!
//! Every member follows grants and revokes ([`Lessor::apply`]); only the leader
//! ("primary") runs the clock: it has an expiry per lease, answers keep-alives, and
//! hands expired leases to a task that proposes `LeaseRevoke` through raft
//! ([`Lessor::next_expired`]). Followers hold every lease "forever". When a member
//! becomes leader, [`Lessor::promote`] gives every lease a fresh expiry of now +
//! extend + its TTL (or its checkpointed remaining TTL), so a failover never expires
//! leases en masse; above etcd's revoke rate, expiries are spread so that no more
//! than three quarters of that rate fall in any second.
//!
//! A lease handed out as expired is handed out again only after `revoke_retry`
//! (etcd: 3 s) if it is still there, so one revoke is in flight per lease at a time.
//! Time is taken from [`Instant`]; the `*_at` variants take it as an argument, for
//! tests and simulation.

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::mvcc::{Applied, LeaseInfo};

/// The largest TTL a lease may be granted with (etcd's `MaxLeaseTTL`), in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// etcd's `leaseRevokeRate`: revocations per second the leader aims to stay under.
pub const LEASE_REVOKE_RATE: usize = 1000;
/// etcd's interval before an expired lease that is still there is handed out again.
pub const DEFAULT_REVOKE_RETRY: Duration = Duration::from_secs(3);

/// etcd's minimum lease TTL in seconds: one and a half election timeouts, rounded up
/// (`ceil((3 * election_ticks / 2) * heartbeat)`, with integer ticks as etcd computes
/// them). Grants below it are raised to it. 100 ms / 1000 ms gives 2.
pub fn min_ttl(heartbeat_ms: u64, election_ms: u64) -> i64 {
    let heartbeat_ms = heartbeat_ms.max(1);
    let election_ticks = election_ms / heartbeat_ms;
    let ms = (3 * election_ticks / 2).saturating_mul(heartbeat_ms);
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone)]
pub struct LessorConfig {
    /// See [`min_ttl`].
    pub min_ttl: i64,
    /// See [`DEFAULT_REVOKE_RETRY`].
    pub revoke_retry: Duration,
    /// Expired leases returned per [`Lessor::next_expired`] call (etcd: half the
    /// revoke rate per half second).
    pub max_expired_per_batch: usize,
}

impl Default for LessorConfig {
    fn default() -> Self {
        LessorConfig {
            min_ttl: min_ttl(100, 1000),
            revoke_retry: DEFAULT_REVOKE_RETRY,
            max_expired_per_batch: LEASE_REVOKE_RATE / 2,
        }
    }
}

#[derive(Debug)]
pub struct Lessor {
    config: LessorConfig,
    state: Mutex<LessorState>,
    /// Woken when the earliest deadline may have moved earlier, or on promote/demote.
    changed: Notify,
}

#[derive(Debug, Default)]
struct LessorState {
    primary: bool,
    leases: HashMap<i64, Lease>,
    /// (deadline, lease): the earliest first. An entry whose deadline is not its
    /// lease's current `deadline` is stale and skipped.
    queue: BinaryHeap<Reverse<(Instant, i64)>>,
}

#[derive(Debug)]
struct Lease {
    /// Granted TTL (after the minimum was applied), seconds.
    ttl: i64,
    /// Checkpointed remaining TTL, 0 if none.
    remaining_ttl: i64,
    /// `None` on a follower: never expires there.
    expiry: Option<Instant>,
    /// When the clock looks at this lease next: its expiry, or after handing it out,
    /// the retry time.
    deadline: Option<Instant>,
}

impl Lease {
    fn renewal_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

impl LessorState {
    fn schedule(&mut self, id: i64, at: Instant) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.deadline = Some(at);
            self.queue.push(Reverse((at, id)));
        }
    }

    fn rebuild_queue(&mut self) {
        self.queue = self
            .leases
            .iter()
            .filter_map(|(id, l)| l.deadline.map(|d| Reverse((d, *id))))
            .collect();
    }

    /// Drops stale entries from the top of the queue and returns the live earliest.
    fn earliest(&mut self) -> Option<(Instant, i64)> {
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            match self.leases.get(&id) {
                Some(l) if l.deadline == Some(at) => return Some((at, id)),
                _ => {
                    self.queue.pop();
                }
            }
        }
        None
    }
}

impl Lessor {
    pub fn new(config: LessorConfig) -> Lessor {
        Lessor {
            config,
            state: Mutex::new(LessorState::default()),
            changed: Notify::new(),
        }
    }

    pub fn min_ttl(&self) -> i64 {
        self.config.min_ttl
    }

    pub fn is_primary(&self) -> bool {
        self.state.lock().primary
    }

    /// Adds a lease; returns its TTL after the minimum is applied. etcd's errors: id 0
    /// is "lease not found", a TTL above [`MAX_LEASE_TTL`] "too large lease TTL", a
    /// known id "lease already exists".
    pub fn grant(&self, id: i64, ttl: i64) -> Result<i64> {
        self.grant_at(id, ttl, Instant::now())
    }

    pub fn grant_at(&self, id: i64, ttl: i64, now: Instant) -> Result<i64> {
        if id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        let ttl = ttl.max(self.config.min_ttl);
        let mut st = self.state.lock();
        if st.leases.contains_key(&id) {
            return Err(Error::LeaseExist);
        }
        let expiry = st.primary.then(|| now + secs(ttl));
        st.leases.insert(
            id,
            Lease {
                ttl,
                remaining_ttl: 0,
                expiry,
                deadline: None,
            },
        );
        if let Some(at) = expiry {
            st.schedule(id, at);
            drop(st);
            self.changed.notify_waiters();
        }
        Ok(ttl)
    }

    /// Forgets a lease (its revoke was applied).
    pub fn revoke(&self, id: i64) -> Result<()> {
        match self.state.lock().leases.remove(&id) {
            Some(_) => Ok(()),
            None => Err(Error::LeaseNotFound),
        }
    }

    /// Follows a committed batch: its grants and revokes. Replays are harmless.
    pub fn apply(&self, applied: &Applied) {
        self.apply_at(applied, Instant::now());
    }

    pub fn apply_at(&self, applied: &Applied, now: Instant) {
        if applied.restored {
            return;
        }
        for lease in &applied.leases_granted {
            // An id already present is a replay (or a promote that read the store
            // after the grant); the state machine has rejected real duplicates.
            let _ = self.grant_at(lease.id, lease.ttl, now);
        }
        for id in &applied.leases_revoked {
            let _ = self.revoke(*id);
        }
    }

    /// This member became leader: `leases` is the store's table. Every lease expires
    /// at now + `extend` + its TTL (its checkpointed remaining TTL if one was
    /// recorded), spread out above the revoke rate.
    pub fn promote(&self, leases: Vec<LeaseInfo>, extend: Duration) {
        self.promote_at(leases, extend, Instant::now());
    }

    pub fn promote_at(&self, leases: Vec<LeaseInfo>, extend: Duration, now: Instant) {
        let mut st = self.state.lock();
        st.primary = true;
        st.leases.clear();
        for info in leases {
            let mut lease = Lease {
                ttl: info.ttl.max(self.config.min_ttl),
                remaining_ttl: info.remaining_ttl,
                expiry: None,
                deadline: None,
            };
            lease.expiry = Some(now + extend + secs(lease.renewal_ttl()));
            lease.deadline = lease.expiry;
            st.leases.insert(info.id, lease);
        }
        spread_expiries(&mut st, now);
        st.rebuild_queue();
        drop(st);
        self.changed.notify_waiters();
    }

    /// The store was replaced by a snapshot: `leases` is its lease table now. Only a
    /// follower installs snapshots, so nothing expires here.
    pub fn reload(&self, leases: Vec<LeaseInfo>) {
        let mut st = self.state.lock();
        st.leases.clear();
        st.queue.clear();
        for info in leases {
            st.leases.insert(
                info.id,
                Lease {
                    ttl: info.ttl.max(self.config.min_ttl),
                    remaining_ttl: info.remaining_ttl,
                    expiry: None,
                    deadline: None,
                },
            );
        }
    }

    /// This member is no longer leader: no lease expires here any more.
    pub fn demote(&self) {
        let mut st = self.state.lock();
        st.primary = false;
        for l in st.leases.values_mut() {
            l.expiry = None;
            l.deadline = None;
        }
        st.queue.clear();
        drop(st);
        self.changed.notify_waiters();
    }

    /// A keep-alive: the lease expires TTL seconds from now; returns the TTL.
    /// `NotLeader` on a follower (the server forwards keep-alives to the leader);
    /// `LeaseNotFound` for an unknown lease, or one already expired (its revoke is
    /// pending; etcd waits for it and then answers the same).
    pub fn keep_alive(&self, id: i64) -> Result<i64> {
        self.keep_alive_at(id, Instant::now())
    }

    pub fn keep_alive_at(&self, id: i64, now: Instant) -> Result<i64> {
        let mut st = self.state.lock();
        if !st.primary {
            return Err(Error::NotLeader);
        }
        let lease = st.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if lease.expiry.is_some_and(|e| e <= now) {
            return Err(Error::LeaseNotFound);
        }
        // A renewal clears a checkpointed remaining TTL (etcd proposes that through
        // raft when checkpoints are on; without them there is none to clear).
        lease.remaining_ttl = 0;
        let ttl = lease.ttl;
        let expiry = now + secs(ttl);
        lease.expiry = Some(expiry);
        st.schedule(id, expiry);
        Ok(ttl)
    }

    /// `(remaining seconds, granted TTL)`; remaining is truncated toward zero and
    /// negative once expired, as etcd reports it. On a follower, remaining is the TTL
    /// (or checkpointed remaining TTL): followers keep no clock, and etcd serves this
    /// call on the leader.
    pub fn time_to_live(&self, id: i64) -> Option<(i64, i64)> {
        self.time_to_live_at(id, Instant::now())
    }

    pub fn time_to_live_at(&self, id: i64, now: Instant) -> Option<(i64, i64)> {
        let st = self.state.lock();
        let lease = st.leases.get(&id)?;
        let remaining = match lease.expiry {
            Some(e) if e >= now => (e - now).as_secs() as i64,
            Some(e) => -((now - e).as_secs() as i64),
            None => lease.renewal_ttl(),
        };
        Some((remaining, lease.ttl))
    }

    /// Leases past their expiry, at most `max_expired_per_batch`, each handed out again
    /// only after `revoke_retry` if its revoke has not been applied by then. Empty on a
    /// follower.
    pub fn expired_at(&self, now: Instant) -> Vec<i64> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        if !st.primary {
            return out;
        }
        let limit = self.config.max_expired_per_batch.max(1);
        while out.len() < limit {
            let Some((at, id)) = st.earliest() else { break };
            if at > now {
                break;
            }
            st.queue.pop();
            st.schedule(id, now + self.config.revoke_retry);
            out.push(id);
        }
        out
    }

    /// Waits until at least one lease has expired and returns them (see
    /// [`Lessor::expired_at`]). For the leader's revoke task:
    /// `loop { for id in lessor.next_expired().await { propose LeaseRevoke(id) } }`.
    pub async fn next_expired(&self) -> Vec<i64> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change in between is not missed.
            notified.as_mut().enable();
            let expired = self.expired_at(Instant::now());
            if !expired.is_empty() {
                return expired;
            }
            let next = {
                let mut st = self.state.lock();
                if st.primary {
                    st.earliest().map(|(at, _)| at)
                } else {
                    None
                }
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// etcd's pile-up avoidance after promote: walking leases by expiry, once more than
/// three quarters of the revoke rate would expire within a second of a window's start,
/// the rest are pushed later in proportion.
fn spread_expiries(st: &mut LessorState, now: Instant) {
    if st.leases.len() < LEASE_REVOKE_RATE {
        return;
    }
    let mut order: Vec<(Instant, i64)> = st
        .leases
        .iter()
        .filter_map(|(id, l)| l.expiry.map(|e| (e, *id)))
        .collect();
    order.sort_unstable();
    let target = (3 * LEASE_REVOKE_RATE / 4) as f64;
    let remaining = |e: Instant| e.saturating_duration_since(now).as_secs_f64();
    let Some(&(first, _)) = order.first() else {
        return;
    };
    let mut base = remaining(first);
    let mut next_window = base + 1.0;
    let mut expires = 0usize;
    for (expiry, id) in order {
        let rem = remaining(expiry);
        if rem > next_window {
            base = rem;
            next_window = base + 1.0;
            expires = 1;
            continue;
        }
        expires += 1;
        if expires as f64 <= target {
            continue;
        }
        let delay = (expires as f64 / target - (rem - base)).max(0.0);
        next_window = base + delay;
        if let Some(l) = st.leases.get_mut(&id) {
            let e = expiry + Duration::from_secs_f64(delay);
            l.expiry = Some(e);
            l.deadline = Some(e);
        }
    }
}
