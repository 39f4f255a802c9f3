//! Range requests, shared by the store's readers and the apply batch (reads inside a
//! txn): revision checks, choosing index entries, then filters, sorting and limits as
//! etcd's `executeRange` does them.

use std::cmp::Ordering;

use mnemo_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use mnemo_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use mnemo_proto::mvccpb::KeyValue;

use super::index::{IndexRev, IndexView, KeyRange};
use crate::error::{Error, Result};

/// What to read for one request, after its revision was checked.
#[derive(Debug, Clone)]
pub struct RangePlan {
    pub range: KeyRange,
    /// Revision to read at (never 0).
    pub at: i64,
    /// Entries to fetch at most (0: all). One more than the limit, so `more` can be told.
    pub fetch: usize,
    pub count_only: bool,
}

/// Checks the request's revision against the view's current and compact revisions.
/// Revision 0 (or negative) reads at `current`; `compact` itself is still readable.
pub fn plan(req: &RangeRequest, current: i64, compact: i64) -> Result<RangePlan> {
    let at = if req.revision <= 0 {
        current
    } else {
        req.revision
    };
    if at > current {
        return Err(Error::FutureRev);
    }
    if at < compact {
        return Err(Error::Compacted);
    }
    // Sorting and revision filters need every entry before the limit can be applied.
    let needs_all = req.sort_order != SortOrder::None as i32
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let fetch = if needs_all || req.limit <= 0 {
        0
    } else {
        usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    };
    Ok(RangePlan {
        range: KeyRange::new(&req.key, &req.range_end),
        at,
        fetch,
        count_only: req.count_only,
    })
}

/// The keys visible at the plan's revision (at most `fetch` of them unless `count_only`)
/// and how many there are in all.
pub fn select(index: &dyn IndexView, plan: &RangePlan) -> (Vec<(Vec<u8>, IndexRev)>, i64) {
    let mut picks = Vec::new();
    let mut total = 0i64;
    index.visit(&plan.range, &mut |key, entry| {
        if let Some(r) = entry.at(plan.at) {
            total += 1;
            if !plan.count_only && (plan.fetch == 0 || picks.len() < plan.fetch) {
                picks.push((key.to_vec(), r));
            }
        }
        true
    });
    (picks, total)
}

/// Filters, sorts and trims fetched key-values into the response (header: revision only).
pub fn finish(
    req: &RangeRequest,
    mut kvs: Vec<KeyValue>,
    total: i64,
    header_rev: i64,
) -> RangeResponse {
    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    // Entries come in ascending key order: sorting by key ascending is a no-op, and any
    // other target with no order given means ascending by that target.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable, so equal targets stay in key order (etcd leaves their order unspecified).
        match order {
            SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
            _ => kvs.sort_by(cmp),
        }
    }
    let mut more = false;
    if req.limit > 0 {
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        if kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse {
        header: Some(header(header_rev)),
        kvs,
        more,
        count: total,
    }
}

/// A response header carrying only the revision; the server fills in the rest.
pub fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}
