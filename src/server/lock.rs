//! etcd's Lock service (`v3lockpb.Lock`), as etcd's server runs it over its
//! `concurrency.Mutex`: the lock `name` is held by the oldest key under `name/`.

use std::sync::Arc;

use mnemo_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use super::concurrency::{waiters_prefix, Withdraw};
use super::Access;
use super::EtcdServer;
use crate::error::{Error, Result};
use mnemo_proto::etcdserverpb::DeleteRangeRequest;

impl EtcdServer {
    /// Puts `name/<lease hex>` with the lease (or finds it, when the lease holds it
    /// already), waits until every older key under `name/` is deleted, and answers with
    /// the key: the caller owns the lock until that key goes (Unlock, or the lease ends).
    /// A lease that is unknown, or ends while waiting, fails with "requested lease not
    /// found"; a caller that goes away while waiting has its key deleted.
    pub async fn lock(self: &Arc<Self>, req: LockRequest) -> Result<LockResponse> {
        let lease = self.session_lease(req.lease).await?;
        let me = self.enqueue(&req.name, lease, b"").await?;
        let withdraw = Withdraw::new(self, &me);
        let header = self
            .wait_predecessors(&waiters_prefix(&req.name), &me, Error::LockSessionExpired)
            .await?;
        withdraw.disarm();
        Ok(LockResponse {
            header: Some(header),
            key: me.key,
        })
    }

    /// Deletes the lock's key; an unknown key is no error.
    pub async fn unlock(&self, req: UnlockRequest) -> Result<UnlockResponse> {
        let resp = self
            .delete_range(
                &Access::unchecked(),
                DeleteRangeRequest {
                    key: req.key,
                    ..Default::default()
                },
            )
            .await?;
        Ok(UnlockResponse {
            header: resp.header,
        })
    }
}
