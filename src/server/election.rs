//! etcd's Election service (`v3electionpb.Election`), as etcd's server runs it over its
//! `concurrency.Election`: the leader of election `name` is the oldest key under
//! `name/`, and its value is what the leader proclaims.

use std::sync::Arc;

use mnemo_proto::etcdserverpb::range_request::SortOrder;
use mnemo_proto::etcdserverpb::{ResponseHeader, TxnRequest};
use mnemo_proto::mvccpb::event::EventType;
use mnemo_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;

use super::concurrency::{
    by_create, created_at, delete_op, prefix_end, put_op, waiters_prefix, KeyWatch, Withdraw,
};
use super::Access;
use super::EtcdServer;
use crate::error::{Error, Result};

impl EtcdServer {
    /// Puts `name/<lease hex>` holding `value` with the lease (a key the lease holds
    /// already gets the new value), waits until every older candidate's key is deleted,
    /// and answers with the leader key. A lease that is unknown, or ends while waiting,
    /// fails with "requested lease not found"; a caller that goes away while waiting
    /// has its key deleted.
    pub async fn campaign(self: &Arc<Self>, req: CampaignRequest) -> Result<CampaignResponse> {
        let lease = self.session_lease(req.lease).await?;
        let me = self.enqueue(&req.name, lease, &req.value).await?;
        let withdraw = Withdraw::new(self, &me);
        if me.existing_value.as_ref().is_some_and(|v| *v != req.value) {
            self.proclaim_as(&me.key, me.create_revision, lease, &req.value)
                .await?;
        }
        self.wait_predecessors(&waiters_prefix(&req.name), &me, Error::ElectionNotLeader)
            .await?;
        withdraw.disarm();
        Ok(CampaignResponse {
            header: me.header,
            leader: Some(LeaderKey {
                name: req.name,
                key: me.key,
                rev: me.create_revision,
                lease,
            }),
        })
    }

    /// Sets the leader's value, if the leader key still exists with its create
    /// revision (else "election: not leader").
    pub async fn proclaim(&self, req: ProclaimRequest) -> Result<ProclaimResponse> {
        let leader = req.leader.ok_or(Error::MissingLeaderKey)?;
        let lease = self.session_lease(leader.lease).await?;
        let header = self
            .proclaim_as(&leader.key, leader.rev, lease, &req.value)
            .await?;
        Ok(ProclaimResponse {
            header: Some(header),
        })
    }

    async fn proclaim_as(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &[u8],
    ) -> Result<ResponseHeader> {
        let resp = self
            .txn(
                &Access::unchecked(),
                TxnRequest {
                    compare: vec![created_at(key, rev)],
                    success: vec![put_op(key, value, lease)],
                    failure: vec![],
                },
            )
            .await?;
        if !resp.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(resp.header.unwrap_or_default())
    }

    /// Deletes the leader key if it still exists with its create revision; a key
    /// already gone is no error.
    pub async fn resign(&self, req: ResignRequest) -> Result<ResignResponse> {
        let leader = req.leader.ok_or(Error::MissingLeaderKey)?;
        let resp = self
            .txn(
                &Access::unchecked(),
                TxnRequest {
                    compare: vec![created_at(&leader.key, leader.rev)],
                    success: vec![delete_op(&leader.key)],
                    failure: vec![],
                },
            )
            .await?;
        Ok(ResignResponse {
            header: resp.header,
        })
    }

    /// The leader's key-value: the oldest key under `name/` ("election: no leader"
    /// when there is none).
    pub async fn leader(&self, name: &[u8]) -> Result<LeaderResponse> {
        let resp = self
            .range(
                &Access::unchecked(),
                by_create(&waiters_prefix(name), SortOrder::Ascend, 0),
            )
            .await?;
        let kv = resp.kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
        Ok(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        })
    }

    /// Streams the leader of `name`: the current one (or, with none, the first to
    /// appear), then each value it proclaims, then on its deletion the next leader, and
    /// so on until the receiver is dropped or an error (sent last) ends it.
    pub fn observe(self: &Arc<Self>, name: Vec<u8>) -> mpsc::Receiver<Result<LeaderResponse>> {
        let (tx, rx) = mpsc::channel(16);
        let server = self.clone();
        tokio::spawn(async move {
            let ended = tokio::select! {
                result = server.observe_into(&name, &tx) => result,
                _ = tx.closed() => Ok(()),
            };
            if let Err(e) = ended {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    async fn observe_into(
        &self,
        name: &[u8],
        tx: &mpsc::Sender<Result<LeaderResponse>>,
    ) -> Result<()> {
        let prefix = waiters_prefix(name);
        let end = prefix_end(&prefix);
        loop {
            let resp = self
                .range(
                    &Access::unchecked(),
                    by_create(&prefix, SortOrder::Ascend, 0),
                )
                .await?;
            let now = resp.header.as_ref().map_or(0, |h| h.revision);
            let (revision, kv) = match resp.kvs.into_iter().next() {
                Some(kv) => (now, kv),
                None => {
                    // No candidate: the first key put under the prefix is the leader.
                    let mut watch = KeyWatch::ranges(self, &[(&prefix, &end)], now + 1)?;
                    loop {
                        let (_, events) = watch.next().await?;
                        let first_put = events
                            .into_iter()
                            .find(|e| e.r#type == EventType::Put as i32)
                            .and_then(|e| e.kv);
                        if let Some(kv) = first_put {
                            break (kv.mod_revision, kv);
                        }
                    }
                }
            };
            let key = kv.key.clone();
            let first = LeaderResponse {
                header: Some(self.header(revision)),
                kv: Some(kv),
            };
            if tx.send(Ok(first)).await.is_err() {
                return Ok(());
            }
            // The leader's proclamations, until its key is deleted.
            let mut watch = KeyWatch::new(self, &[&key], revision + 1)?;
            'leader: loop {
                let (revision, events) = watch.next().await?;
                for e in events {
                    if e.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    let update = LeaderResponse {
                        header: Some(self.header(revision)),
                        kv: e.kv,
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
