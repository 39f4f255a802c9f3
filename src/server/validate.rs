//! Request checks made before a request is proposed, with etcd's rules and errors
//! (etcd's `api/v3rpc/key.go`): empty keys, flags that contradict each other, the txn
//! operation limit and keys written twice in one txn.

use std::collections::BTreeSet;

use mnemo_proto::etcdserverpb::{
    request_op::Request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use crate::error::{Error, Result};

pub fn check_range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` followed by its `checkIntervals`.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    check_txn_ops(r, max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_txn_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => check_range(r)?,
            Some(Request::RequestPut(r)) => check_put(r)?,
            Some(Request::RequestDeleteRange(r)) => check_delete(r)?,
            Some(Request::RequestTxn(t)) => check_txn_ops(t, max_txn_ops)?,
            None => {}
        }
    }
    Ok(())
}

/// A half-open key interval `[start, end)`; `end == None` means unbounded.
#[derive(Debug, Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of_delete(r: &DeleteRangeRequest) -> Interval {
        let end = match r.range_end.as_slice() {
            [] => {
                let mut e = r.key.clone();
                e.push(0);
                Some(e)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        Interval {
            start: r.key.clone(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// Keys put and ranges deleted by one branch, including nested txns.
type Writes = (BTreeSet<Vec<u8>>, Vec<Interval>);

/// etcd's `checkIntervals`: within one branch (counting nested txns), no key may be put
/// twice or both put and deleted. A nested txn's success and failure branches exclude
/// each other, so the same key may be put in both.
fn check_intervals(reqs: &[RequestOp]) -> Result<Writes> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Interval::of_delete(d)),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], k: &[u8]| dels.iter().any(|iv| iv.contains(k));
    let mut puts = BTreeSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemo_proto::etcdserverpb::Compare;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }
    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(t)),
        }
    }

    #[test]
    fn put_flags_contradicting_values_are_refused() {
        let mut p = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&p), Err(Error::ValueProvided));
        p.ignore_value = false;
        p.ignore_lease = true;
        p.lease = 5;
        assert_eq!(check_put(&p), Err(Error::LeaseProvided));
        p.key.clear();
        assert_eq!(check_put(&p), Err(Error::EmptyKey));
    }

    #[test]
    fn too_many_ops_counts_the_largest_list() {
        let t = txn((0..129).map(|i| put(&format!("k{i}"))).collect(), vec![]);
        assert_eq!(check_txn(&t, 128), Err(Error::TooManyOps));
        let t = txn((0..128).map(|i| put(&format!("k{i}"))).collect(), vec![]);
        assert_eq!(check_txn(&t, 128), Ok(()));
        let mut t = txn(vec![], vec![]);
        t.compare = vec![Compare::default(); 3];
        assert_eq!(check_txn(&t, 2), Err(Error::TooManyOps));
        assert_eq!(check_txn(&t, 3), Err(Error::EmptyKey));
    }

    #[test]
    fn duplicate_puts_and_put_inside_deleted_range_are_refused() {
        assert_eq!(
            check_txn(&txn(vec![put("a"), put("a")], vec![]), 128),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("b"), del("a", "c")], vec![]), 128),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("c"), del("a", "c")], vec![]), 128),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![put("z"), del("a", "\0")], vec![]), 128),
            Err(Error::DuplicateKey)
        );
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
    }

    #[test]
    fn nested_branches_exclude_each_other_but_not_their_parent() {
        let inner = txn(vec![put("a")], vec![put("a")]);
        assert_eq!(
            check_txn(&txn(vec![nested(inner.clone())], vec![]), 128),
            Ok(())
        );
        assert_eq!(
            check_txn(&txn(vec![nested(inner), put("a")], vec![]), 128),
            Err(Error::DuplicateKey)
        );
        let inner_del = txn(vec![del("a", "b")], vec![]);
        assert_eq!(
            check_txn(&txn(vec![nested(inner_del), put("a")], vec![]), 128),
            Err(Error::DuplicateKey)
        );
    }
}
