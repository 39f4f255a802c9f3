//! Membership changes (etcd's Cluster service), leadership transfer, and the requests
//! followers send their leader: each is done by the leader; another member forwards it.
//!
//! Raft's membership is openraft's: voters and learners, each with its [`Member`] (name,
//! peer and client URLs). A member added by MemberAdd has no name and no client URLs
//! until it starts and publishes them ([`EtcdServer::publish`]), as in etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mnemo_proto::etcdserverpb::Member as PbMember;
use mnemo_proto::mnemopeerpb::change_members_request::Change;
use mnemo_proto::mnemopeerpb::{ChangeMembersRequest, LeaseRequest, MemberInfo, PeerHeader};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::EtcdServer;
use crate::error::{Error, Result};
use crate::raft::node::{peer_error, peer_status_error};
use crate::raft::Member;

/// etcd promotes a learner only once its log has reached this share of the leader's.
const LEARNER_READY_PERCENT: f64 = 0.9;

/// etcd allows one learner at a time.
const MAX_LEARNERS: usize = 1;

impl EtcdServer {
    /// Does `change` here if this member leads, or forwards it to the leader; returns the
    /// members afterwards.
    pub async fn change_members(&self, change: Change) -> Result<Vec<PbMember>> {
        let Some((leader, mut client)) = self.raft.remote_leader().await? else {
            return self.leader_change_members(change).await;
        };
        let mut req = tonic::Request::new(ChangeMembersRequest {
            header: self.raft.peers().header(leader),
            change: Some(change),
        });
        req.set_timeout(self.raft.request_timeout());
        let resp = client
            .change_members(req)
            .await
            .map_err(|s| peer_status_error(&s))?
            .into_inner();
        peer_error(resp.error)?;
        // Answer once this member has applied the change too.
        let deadline = tokio::time::Instant::now() + self.raft.request_timeout();
        self.raft.wait_applied(resp.index, deadline).await?;
        Ok(resp.members.into_iter().map(pb_member).collect())
    }

    /// A membership change done by the leader.
    pub async fn leader_change_members(&self, change: Change) -> Result<Vec<PbMember>> {
        // One change at a time, each checked against the membership the previous one
        // left: openraft refuses (and logs as an error) a change while another is in
        // flight, which the members of a new cluster publishing at once would hit.
        let _one_at_a_time = self.membership_changes.lock().await;
        self.wait_membership_committed().await;
        let raft = self.raft.raft();
        let status = self.raft.status();
        if status.leader != Some(self.options.member_id) {
            return Err(Error::NotLeader);
        }
        let find = |id: u64| status.members.iter().find(|m| m.id == id);
        match change {
            Change::Add(info) => {
                if find(info.id).is_some() {
                    return Err(Error::MemberExist);
                }
                let taken = status
                    .members
                    .iter()
                    .flat_map(|m| &m.member.peer_urls)
                    .any(|u| info.peer_urls.contains(u));
                if taken {
                    return Err(Error::PeerUrlExist);
                }
                let member = Member {
                    name: info.name.clone(),
                    peer_urls: info.peer_urls.clone(),
                    client_urls: info.client_urls.clone(),
                };
                if info.is_learner {
                    let learners = status.members.iter().filter(|m| m.is_learner).count();
                    if learners >= MAX_LEARNERS {
                        return Err(Error::TooManyLearners);
                    }
                    raft.add_learner(info.id, member, false)
                        .await
                        .map_err(membership_error)?;
                } else {
                    raft.change_membership(
                        ChangeMembers::AddVoters(BTreeMap::from([(info.id, member)])),
                        false,
                    )
                    .await
                    .map_err(membership_error)?;
                }
                tracing::info!(
                    id = format_args!("{:x}", info.id),
                    peer_urls = ?info.peer_urls,
                    learner = info.is_learner,
                    "added member"
                );
            }
            Change::Remove(id) => {
                let m = find(id).ok_or(Error::MemberNotFound)?;
                let change = if m.is_learner {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                };
                raft.change_membership(change, false)
                    .await
                    .map_err(membership_error)?;
                tracing::info!(id = format_args!("{id:x}"), "removed member");
            }
            Change::Update(info) => {
                let m = find(info.id).ok_or(Error::MemberNotFound)?;
                let mut member = m.member.clone();
                if !info.peer_urls.is_empty() {
                    let taken = status
                        .members
                        .iter()
                        .filter(|o| o.id != info.id)
                        .flat_map(|o| &o.member.peer_urls)
                        .any(|u| info.peer_urls.contains(u));
                    if taken {
                        return Err(Error::PeerUrlExist);
                    }
                    member.peer_urls = info.peer_urls.clone();
                }
                // A member publishing itself also sets its name and client URLs.
                if !info.name.is_empty() {
                    member.name = info.name.clone();
                }
                if !info.client_urls.is_empty() {
                    member.client_urls = info.client_urls.clone();
                }
                if member != m.member {
                    raft.change_membership(
                        ChangeMembers::SetNodes(BTreeMap::from([(info.id, member)])),
                        false,
                    )
                    .await
                    .map_err(membership_error)?;
                }
            }
            Change::Promote(id) => {
                let m = find(id).ok_or(Error::MemberNotFound)?;
                if !m.is_learner {
                    return Err(Error::MemberNotLearner);
                }
                let metrics = raft.metrics().borrow().clone();
                let last = metrics.last_log_index.unwrap_or(0);
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |l| l.index);
                if (matched as f64) < (last as f64) * LEARNER_READY_PERCENT {
                    return Err(Error::LearnerNotReady);
                }
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(membership_error)?;
                tracing::info!(id = format_args!("{id:x}"), "promoted learner");
            }
            Change::MoveLeader(target) => self.leader_move_leader(target).await?,
        }
        Ok(self.members())
    }

    /// Waits (up to the request timeout) until the latest membership is committed: a
    /// new leader's first membership change would otherwise find the initial membership
    /// still uncommitted and be refused.
    async fn wait_membership_committed(&self) {
        let deadline = tokio::time::Instant::now() + self.raft.request_timeout();
        loop {
            // The commit index first: never two borrows of raft's metrics at once.
            let commit_index = self.raft.status().commit_index;
            let membership_index = {
                let m = self.raft.raft().metrics();
                let m = m.borrow();
                m.membership_config.log_id().map(|l| l.index)
            };
            if membership_index <= commit_index || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(
                self.options.heartbeat_ms.max(1) / 2 + 1,
            ))
            .await;
        }
    }

    /// Hands leadership to `target`: once it has the whole log, this member stops its
    /// heartbeats and asks it to campaign until it wins.
    async fn leader_move_leader(&self, target: u64) -> Result<()> {
        let status = self.raft.status();
        let voter = status
            .members
            .iter()
            .any(|m| m.id == target && !m.is_learner);
        if !voter {
            return Err(Error::BadLeaderTransferee);
        }
        if target == self.options.member_id {
            return Ok(());
        }
        let raft = self.raft.raft();
        let timeout = self.raft.request_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let last = raft.metrics().borrow().last_log_index;
        raft.wait(Some(timeout))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&target).cloned().flatten())
                        .map(|l| l.index)
                        >= last
                },
                "transferee caught up",
            )
            .await
            .map_err(|_| Error::Timeout)?;
        let member = status
            .members
            .iter()
            .find(|m| m.id == target)
            .map(|m| m.member.clone())
            .ok_or(Error::BadLeaderTransferee)?;
        let mut client = self
            .raft
            .peers()
            .member_client(&member)
            .map_err(Error::Internal)?;
        // The transferee campaigns at once. A voter grants it while that voter's leader
        // lease has lapsed (openraft refuses votes within one election timeout of
        // hearing from a leader); this member's own lease runs from when it was elected,
        // so in a three-member cluster its vote alone makes the transferee leader and the
        // move takes one round trip. Larger clusters need the other followers' leases to
        // lapse too: heartbeats stop, the transferee is asked again the moment the last
        // heartbeat's lease ends (before any follower's own election timer, which runs at
        // least a heartbeat longer), and then with a growing pause that leaves each
        // campaign time to finish, until it wins.
        let lease = Duration::from_millis(self.options.election_timeout_ms);
        let heartbeat = Duration::from_millis(self.options.heartbeat_ms.max(1));
        let mut pause = 2 * heartbeat;
        let stopped = tokio::time::Instant::now();
        raft.runtime_config().heartbeat(false);
        let moved_within = |wait: Duration| async move {
            raft.wait(Some(wait))
                .metrics(move |m| m.current_leader == Some(target), "new leader")
                .await
                .is_ok()
        };
        let result = async {
            for attempt in 0.. {
                let mut req = tonic::Request::new(PeerHeader {
                    cluster_id: self.options.cluster_id,
                    from: self.options.member_id,
                    to: target,
                });
                req.set_timeout(lease);
                if let Err(s) = client.timeout_now(req).await {
                    tracing::warn!(error = %s.message(), "asking the transferee to campaign");
                }
                if moved_within(pause).await {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout);
                }
                let leader = raft.metrics().borrow().current_leader;
                if leader.is_some_and(|l| l != self.options.member_id && l != target) {
                    // Someone else won; etcd's transfer fails the same way.
                    return Err(Error::Timeout);
                }
                if attempt == 0 {
                    let lapsed =
                        (stopped + lease).saturating_duration_since(tokio::time::Instant::now());
                    if moved_within(lapsed).await {
                        return Ok(());
                    }
                } else {
                    pause = (pause * 2).min(lease);
                }
            }
            Err(Error::Timeout)
        }
        .await;
        raft.runtime_config().heartbeat(true);
        if result.is_ok() {
            tracing::info!(to = format_args!("{target:x}"), "leadership moved");
        }
        result
    }

    /// Leadership transfer (Maintenance.MoveLeader).
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        self.change_members(Change::MoveLeader(target))
            .await
            .map(|_| ())
    }

    /// Makes this member's name and client URLs part of the membership, as etcd's
    /// members publish theirs when they start. Retries until it succeeds or the member
    /// stops.
    pub async fn publish(&self) {
        let me = self.options.member.clone();
        loop {
            let known = self
                .raft
                .status()
                .members
                .into_iter()
                .find(|m| m.id == self.options.member_id);
            match known {
                // A new member learns the membership from the leader's first entries.
                None => {
                    tokio::time::sleep(Duration::from_millis(self.options.heartbeat_ms)).await;
                    continue;
                }
                Some(m) if m.member.name == me.name && m.member.client_urls == me.client_urls => {
                    return
                }
                Some(_) => {}
            }
            let change = Change::Update(MemberInfo {
                id: self.options.member_id,
                name: me.name.clone(),
                peer_urls: vec![],
                client_urls: me.client_urls.clone(),
                is_learner: false,
            });
            match self.change_members(change).await {
                Ok(_) => {
                    tracing::info!(name = %me.name, client_urls = ?me.client_urls, "published this member");
                    return;
                }
                Err(Error::Stopped) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "publishing this member; retrying");
                    tokio::time::sleep(Duration::from_millis(self.options.heartbeat_ms * 5)).await;
                }
            }
        }
    }

    /// Refreshes a lease on the leader's clock; returns its TTL. A follower asks the
    /// leader.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        self.lease_on_leader(LeaseCall::KeepAlive, id)
            .await
            .map(|(ttl, _)| ttl)
    }

    /// A lease's remaining and granted TTL on the leader's clock (`None`: unknown there).
    pub async fn lease_remaining(&self, id: i64) -> Result<Option<(i64, i64)>> {
        match self.lease_on_leader(LeaseCall::TimeToLive, id).await {
            Ok(t) => Ok(Some(t)),
            Err(Error::LeaseNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `call` on the leader's lease clock: (TTL, granted TTL; 0 for a keep-alive).
    async fn lease_on_leader(&self, call: LeaseCall, id: i64) -> Result<(i64, i64)> {
        let Some((leader, mut client)) = self.raft.remote_leader().await? else {
            return self.leader_lease(call, id);
        };
        let mut req = tonic::Request::new(LeaseRequest {
            header: self.raft.peers().header(leader),
            id,
        });
        req.set_timeout(self.raft.request_timeout());
        let resp = match call {
            LeaseCall::KeepAlive => client.lease_keep_alive(req).await,
            LeaseCall::TimeToLive => client.lease_time_to_live(req).await,
        };
        let resp = resp.map_err(|s| peer_status_error(&s))?.into_inner();
        peer_error(resp.error)?;
        Ok((resp.ttl, resp.granted_ttl))
    }

    /// A lease call this member answers as the leader.
    pub fn leader_lease(&self, call: LeaseCall, id: i64) -> Result<(i64, i64)> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        match call {
            LeaseCall::KeepAlive => self.lessor.keep_alive(id).map(|ttl| (ttl, 0)),
            LeaseCall::TimeToLive => {
                if let Some(t) = self.lessor.time_to_live(id) {
                    return Ok(t);
                }
                let info = self.store.lease(id).ok_or(Error::LeaseNotFound)?;
                Ok((info.ttl, info.ttl))
            }
        }
    }
}

/// The lease requests only the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCall {
    KeepAlive,
    TimeToLive,
}

/// A member as etcd's API shows it.
pub fn pb_member(m: MemberInfo) -> PbMember {
    PbMember {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

fn membership_error(e: RaftError<u64, ClientWriteError<u64, Member>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            if f.leader_id.is_some() {
                Error::NotLeader
            } else {
                Error::NoLeader
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
            ChangeMembershipError::InProgress(_) => {
                Error::Internal("a membership change is in progress".into())
            }
            ChangeMembershipError::EmptyMembership(_) => Error::Unhealthy,
            ChangeMembershipError::LearnerNotFound(_) => Error::MemberNotFound,
        },
        RaftError::Fatal(e) => {
            tracing::warn!(error = %e, "raft stopped");
            Error::Stopped
        }
    }
}
