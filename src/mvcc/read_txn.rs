//! Read-only txns served without raft.

use mnemo_proto::etcdserverpb::{TxnRequest, TxnResponse};

use super::Store;
use crate::command::{Command, CommandResponse, Op};
use crate::error::{Error, Result};

impl Store {
    /// Runs a txn that writes nothing against the current state, outside raft (etcd
    /// serves read-only txns locally). It is evaluated by an apply batch that is then
    /// dropped, so it takes its turn with applies; nothing is committed.
    pub fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        let mut batch = self.begin_apply()?;
        match batch.apply(&Command::new(Op::Txn(req.clone()))) {
            CommandResponse::Txn(resp) => {
                if batch.current_revision() != self.current_revision() {
                    return Err(Error::Internal("a read-only txn wrote".into()));
                }
                Ok(resp)
            }
            CommandResponse::Error(e) => Err(e),
            other => Err(Error::Internal(format!("read-only txn produced {other:?}"))),
        }
    }
}
