//! Read-only txns served without raft (etcd serves them locally too).
//!
//! A txn whose every branch, nested ones included, holds only ranges is evaluated at one
//! revision, the store's current revision when it starts, against a page-file snapshot
//! taken at the same moment. It takes neither the apply gate nor the page file's writer,
//! so it never waits for an apply batch or a defrag step. Compares see the values
//! visible at that revision (read from the snapshot, since the index's live-value fields
//! may already describe newer batches); if a compaction overtakes the revision while
//! the txn runs, it fails with `Compacted`.

use mnemo_proto::etcdserverpb::compare::CompareTarget;
use mnemo_proto::etcdserverpb::request_op::Request;
use mnemo_proto::etcdserverpb::response_op::Response;
use mnemo_proto::etcdserverpb::{
    Compare, RangeRequest, RangeResponse, ResponseOp, TxnRequest, TxnResponse,
};
use mnemo_proto::mvccpb::KeyValue;
use mnemo_storage::ReadTransaction;

use super::apply::compare_kv;
use super::index::{IndexRev, KeyRange};
use super::range::{self, header};
use super::record::KV_TABLE;
use super::store::read_kv;
use super::Store;
use crate::error::{Error, Result};

/// Whether a txn writes nothing on any branch (etcd's `IsTxnReadonly`, applied to
/// nested txns as well).
pub fn txn_is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(t)) => txn_is_read_only(t),
            _ => false,
        })
}

/// One revision and a snapshot holding every record visible at it.
struct Pinned {
    rtx: ReadTransaction,
    rev: i64,
}

impl Store {
    /// Runs a txn that writes nothing against the current state, outside raft.
    /// `InvalidArgument` if any branch writes.
    pub fn read_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        if !txn_is_read_only(req) {
            return Err(Error::InvalidArgument(
                "mnemo: read_txn was given a txn that writes".into(),
            ));
        }
        let p = {
            let st = self.state.read();
            Pinned {
                rtx: st.db.begin_read()?,
                rev: st.current_rev,
            }
        };
        let mut path = Vec::new();
        self.read_compare_path(&p, req, &mut path)?;
        self.read_check(&p, req, &path)?;
        let (mut resp, _) = self.read_exec(&p, req, &path)?;
        resp.header = Some(header(p.rev));
        Ok(resp)
    }

    /// Keys in `range` visible at the pinned revision, from the index as it is now.
    fn visible_at(&self, p: &Pinned, range: &KeyRange) -> Result<Vec<(Vec<u8>, IndexRev)>> {
        let st = self.state.read();
        if st.compact_rev > p.rev {
            return Err(Error::Compacted);
        }
        let mut out = Vec::new();
        for (k, e) in st.index.range(range) {
            if let Some(r) = e.at(p.rev) {
                out.push((k.to_vec(), r));
            }
        }
        Ok(out)
    }

    fn read_compare(&self, p: &Pinned, c: &Compare) -> Result<bool> {
        let target = CompareTarget::try_from(c.target).ok();
        let live = self.visible_at(p, &KeyRange::new(&c.key, &c.range_end))?;
        if live.is_empty() {
            return Ok(
                target != Some(CompareTarget::Value) && compare_kv(c, target, &KeyValue::default())
            );
        }
        let table = p.rtx.open_table(KV_TABLE)?;
        for (k, r) in live {
            if !compare_kv(c, target, &read_kv(&table, &k, r)?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn read_compare_path(&self, p: &Pinned, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !self.read_compare(p, c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        let ops = if ok { &req.success } else { &req.failure };
        for op in ops {
            if let Some(Request::RequestTxn(nested)) = &op.request {
                self.read_compare_path(p, nested, path)?;
            }
        }
        Ok(())
    }

    /// etcd's `checkTxn` for ranges: revisions beyond the pinned one or below the compact
    /// revision fail the whole txn before anything is read.
    fn read_check(&self, p: &Pinned, req: &TxnRequest, path: &[bool]) -> Result<usize> {
        let compact = self.compact_revision();
        let mut path = path;
        let mut txns = 0;
        let ops = if path.first().copied().unwrap_or(false) {
            &req.success
        } else {
            &req.failure
        };
        for op in ops {
            match &op.request {
                Some(Request::RequestRange(r)) if r.revision != 0 => {
                    if r.revision > p.rev {
                        return Err(Error::FutureRev);
                    }
                    if compact > 0 && r.revision < compact {
                        return Err(Error::Compacted);
                    }
                }
                Some(Request::RequestTxn(nested)) => {
                    let n = self.read_check(p, nested, path.get(1..).unwrap_or(&[]))?;
                    txns += n + 1;
                    path = path.get(n + 1..).unwrap_or(&[]);
                }
                _ => {}
            }
        }
        Ok(txns)
    }

    fn read_range(&self, p: &Pinned, req: &RangeRequest) -> Result<RangeResponse> {
        let (picks, total) = {
            let st = self.state.read();
            if st.compact_rev > p.rev {
                return Err(Error::Compacted);
            }
            let plan = range::plan(req, p.rev, st.compact_rev)?;
            range::select(&st.index, &plan)
        };
        let table = p.rtx.open_table(KV_TABLE)?;
        let kvs = picks
            .iter()
            .map(|(k, r)| read_kv(&table, k, *r))
            .collect::<Result<Vec<_>>>()?;
        Ok(range::finish(req, kvs, total, p.rev))
    }

    fn read_exec(
        &self,
        p: &Pinned,
        req: &TxnRequest,
        path: &[bool],
    ) -> Result<(TxnResponse, usize)> {
        let succeeded = path.first().copied().unwrap_or(false);
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut path = path;
        let mut txns = 0;
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    Some(Response::ResponseRange(self.read_range(p, r)?))
                }
                Some(Request::RequestTxn(nested)) => {
                    let (mut r, n) = self.read_exec(p, nested, path.get(1..).unwrap_or(&[]))?;
                    r.header = Some(Default::default());
                    txns += n + 1;
                    path = path.get(n + 1..).unwrap_or(&[]);
                    Some(Response::ResponseTxn(r))
                }
                _ => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok((
            TxnResponse {
                header: None,
                succeeded,
                responses,
            },
            txns,
        ))
    }
}
