//! `check`: the page file's integrity walk (every page reachable once or free, checksums,
//! key order, entry counts), then the MVCC invariants over the history:
//!
//! * every record decodes and its seal matches its revision;
//! * no record is newer than the store's current revision, and every revision after the
//!   compacted one up to the current one is present, with sub revisions 0, 1, 2, ...;
//! * each key's history is a chain of generations: a put after nothing or after a
//!   tombstone has version 1 and creates the key at its own revision; a put after a put
//!   keeps the create revision and adds one to the version; no tombstone follows a
//!   tombstone (records at or below the compacted revision may already be gone, so
//!   chains are checked from the first record after it);
//! * every live key's lease exists in the lease table.
//!
//! Exit code 0 when nothing is wrong, 1 otherwise; every problem is printed.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::path::Path;

use mnemo::mvcc::record::{
    self, Record, RecordKind, KV_TABLE, LEASE_TABLE, META_COMPACT_REV, META_CURRENT_REV, META_TABLE,
};
use mnemo::mvcc::Revision;
use mnemo_storage::ReadTransaction;
use serde_json::json;

use super::target::PageFile;
use super::{escape, Report, Result};

/// Problems printed in full; the rest are counted.
const MAX_SHOWN: usize = 1000;

pub fn run(path: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let db = file.database()?;
    let report = db.check().map_err(|e| file.context(e))?;
    let mut problems = report.problems.clone();
    let mut mvcc = None;
    let tables: Vec<String> = db
        .begin_read()
        .and_then(|r| r.list_tables())
        .map_err(|e| file.context(e))?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if tables.iter().any(|t| t == KV_TABLE) {
        let rtx = db.begin_read().map_err(|e| file.context(e))?;
        let (found, summary) = check_history(&rtx);
        problems.extend(found);
        mvcc = Some(summary);
    }
    let mut text = String::new();
    let s = &report.stats;
    let _ = writeln!(
        text,
        "page file: {} pages ({} free), {} tables, commit txn {}",
        s.page_count,
        s.free_pages,
        s.tables.len(),
        s.txn
    );
    if let Some(m) = &mvcc {
        let _ = writeln!(
            text,
            "history:   revision {}, compacted at {}, {} records, {} live keys",
            m.current, m.compacted, m.records, m.live_keys
        );
    }
    for p in problems.iter().take(MAX_SHOWN) {
        let _ = writeln!(text, "PROBLEM: {p}");
    }
    if problems.len() > MAX_SHOWN {
        let _ = writeln!(text, "... and {} more", problems.len() - MAX_SHOWN);
    }
    if problems.is_empty() {
        let _ = writeln!(text, "OK");
    }
    let json = json!({
        "ok": problems.is_empty(),
        "problems": problems,
        "page_count": s.page_count,
        "free_pages": s.free_pages,
        "txn": s.txn,
        "mvcc": mvcc.as_ref().map(|m| json!({
            "current_revision": m.current,
            "compact_revision": m.compacted,
            "records": m.records,
            "live_keys": m.live_keys,
        })),
    });
    Ok(Report {
        text,
        ok: problems.is_empty(),
        json,
    })
}

/// What the history walk saw.
#[derive(Debug, Default)]
pub struct HistorySummary {
    pub current: i64,
    pub compacted: i64,
    pub records: u64,
    pub live_keys: u64,
}

/// The last record seen for a key.
#[derive(Clone, Copy)]
struct Last {
    kind: RecordKind,
    create: i64,
    version: i64,
    lease: i64,
    main: i64,
}

/// Walks the `kv` table in revision order and checks the invariants in the module doc.
pub fn check_history(rtx: &ReadTransaction) -> (Vec<String>, HistorySummary) {
    let mut problems = Vec::new();
    let mut summary = HistorySummary::default();
    let meta_i64 = |key: &[u8], problems: &mut Vec<String>| -> Option<i64> {
        let t = rtx.open_table(META_TABLE).ok()?;
        let v = t
            .get(key)
            .map_err(|e| problems.push(e.to_string()))
            .ok()??;
        record::decode_i64(key, &v)
            .map_err(|e| problems.push(e.to_string()))
            .ok()
    };
    let Some(current) = meta_i64(META_CURRENT_REV, &mut problems) else {
        problems.push("meta: mvcc/current_revision is missing".into());
        return (problems, summary);
    };
    let compacted = meta_i64(META_COMPACT_REV, &mut problems).unwrap_or(0);
    summary.current = current;
    summary.compacted = compacted;
    if compacted > current {
        problems.push(format!(
            "meta: compacted revision {compacted} is newer than the current revision {current}"
        ));
    }
    let kv = match rtx.open_table(KV_TABLE).and_then(|t| t.iter()) {
        Ok(it) => it,
        Err(e) => {
            problems.push(e.to_string());
            return (problems, summary);
        }
    };
    let mut keys: HashMap<Vec<u8>, Last> = HashMap::new();
    // Records at or below `floor` may be compacted history not yet removed; above it,
    // revisions run without gaps.
    let floor = compacted.max(1);
    let mut last_above: Option<Revision> = None;
    for e in kv {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                problems.push(err.to_string());
                break;
            }
        };
        summary.records += 1;
        let Some(rev) = Revision::decode(e.key()) else {
            problems.push(format!("kv: key {} is not a revision", escape(e.key())));
            continue;
        };
        let r = match Record::decode(e.key(), e.value()) {
            Ok(r) => r,
            Err(err) => {
                problems.push(err.to_string());
                continue;
            }
        };
        if rev.main > current {
            problems.push(format!(
                "kv: record at revision {}_{} is newer than the current revision {current}",
                rev.main, rev.sub
            ));
        }
        if rev.main > floor {
            let follows = match last_above {
                None => rev == Revision::new(floor + 1, 0),
                Some(l) => {
                    rev == Revision::new(l.main, l.sub + 1) || rev == Revision::new(l.main + 1, 0)
                }
            };
            if !follows {
                let after = last_above.map_or(format!("revision {floor}"), |l| {
                    format!("revision {}_{}", l.main, l.sub)
                });
                problems.push(format!(
                    "kv: revision {}_{} follows {after}: history has a gap",
                    rev.main, rev.sub
                ));
            }
            last_above = Some(rev);
            check_chain(&mut problems, keys.get(r.key).copied(), rev, &r);
        }
        keys.insert(
            r.key.to_vec(),
            Last {
                kind: r.kind,
                create: r.create_revision,
                version: r.version,
                lease: r.lease,
                main: rev.main,
            },
        );
    }
    let newest = last_above.map_or(floor, |l| l.main);
    if current > floor && newest != current {
        problems.push(format!(
            "kv: history ends at revision {newest} but the current revision is {current}"
        ));
    }
    let leases: BTreeSet<i64> = match rtx.open_table(LEASE_TABLE).and_then(|t| t.iter()) {
        Ok(it) => it
            .filter_map(|e| e.ok())
            .filter_map(|e| record::decode_lease(e.key(), e.value()).ok())
            .map(|(id, _, _)| id)
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    for (key, last) in &keys {
        if last.kind == RecordKind::Put {
            summary.live_keys += 1;
            if last.lease != 0 && !leases.contains(&last.lease) {
                problems.push(format!(
                    "key {}: attached to lease {:x} (revision {}), which does not exist",
                    escape(key),
                    last.lease,
                    last.main
                ));
            }
        }
    }
    (problems, summary)
}

/// Checks record `r` at `rev` against the key's previous record.
fn check_chain(problems: &mut Vec<String>, prev: Option<Last>, rev: Revision, r: &Record<'_>) {
    let at = || format!("key {} at revision {}_{}", escape(r.key), rev.main, rev.sub);
    match (prev.map(|p| (p.kind, p)), r.kind) {
        (None | Some((RecordKind::Tombstone, _)), RecordKind::Put) => {
            if r.version != 1 || r.create_revision != rev.main {
                problems.push(format!(
                    "{}: a new generation must have version 1 and create revision {}, \
                     found version {} create revision {}",
                    at(),
                    rev.main,
                    r.version,
                    r.create_revision
                ));
            }
        }
        (Some((RecordKind::Put, p)), RecordKind::Put) => {
            if r.version != p.version + 1 || r.create_revision != p.create {
                problems.push(format!(
                    "{}: after version {} created at {}, found version {} created at {}",
                    at(),
                    p.version,
                    p.create,
                    r.version,
                    r.create_revision
                ));
            }
        }
        (None | Some((RecordKind::Tombstone, _)), RecordKind::Tombstone) => {
            problems.push(format!("{}: a delete of a key that does not exist", at()));
        }
        (Some((RecordKind::Put, _)), RecordKind::Tombstone) => {}
    }
}
