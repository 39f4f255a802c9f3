//! `inspect keys TABLE`: the entries of one table. The MVCC store's tables are decoded:
//! `kv` (history by revision: key, create/mod revision, version, lease, value size),
//! `meta` (revisions and raft metadata), `lease`, `alarm` and `auth` (the enabled flag,
//! users with their roles, roles with their permissions; never password hashes). Other
//! tables print raw.

use std::fmt::Write;
use std::path::Path;

use mnemo::mvcc::record::{
    self, Record, RecordKind, ALARM_TABLE, AUTH_FLAGS_KEY, AUTH_ROLE_PREFIX, AUTH_TABLE,
    AUTH_USER_PREFIX, KV_TABLE, LEASE_TABLE, META_COMPACT_REV, META_CURRENT_REV, META_TABLE,
};
use mnemo::mvcc::Revision;
use serde_json::{json, Value};

use super::target::PageFile;
use super::{escape, Report, Result};

pub fn run(path: &Path, table: &str, limit: usize) -> Result<Report> {
    let file = PageFile::open(path)?;
    let db = file.database()?;
    let rtx = db.begin_read().map_err(|e| file.context(e))?;
    let t = rtx.open_table(table).map_err(|e| file.context(e))?;
    let mut text = String::new();
    let mut rows = Vec::new();
    let mut ok = true;
    for (shown, e) in t.iter().map_err(|e| file.context(e))?.enumerate() {
        if limit > 0 && shown == limit {
            let _ = writeln!(text, "... ({} entries in all)", t.len());
            break;
        }
        let e = e.map_err(|e| file.context(e))?;
        let (line, row) = match describe(table, e.key(), e.value()) {
            Ok(d) => d,
            Err(problem) => {
                ok = false;
                (
                    format!("{}  PROBLEM: {problem}", escape(e.key())),
                    json!({ "key": escape(e.key()), "problem": problem }),
                )
            }
        };
        text.push_str(&line);
        text.push('\n');
        rows.push(row);
    }
    Ok(Report {
        text,
        json: json!({ "table": table, "entries": t.len(), "rows": rows }),
        ok,
    })
}

/// One entry as a line of text and as JSON, or why it does not decode.
fn describe(table: &str, key: &[u8], value: &[u8]) -> std::result::Result<(String, Value), String> {
    let err = |e: mnemo::error::Error| e.to_string();
    match table {
        KV_TABLE => {
            let rev = Revision::decode(key).ok_or("table key is not a revision")?;
            let r = Record::decode(key, value).map_err(err)?;
            Ok(describe_record(rev, &r))
        }
        META_TABLE if key == META_CURRENT_REV || key == META_COMPACT_REV => {
            let v = record::decode_i64(key, value).map_err(err)?;
            Ok((
                format!("{}  {v}", escape(key)),
                json!({ "key": escape(key), "value": v }),
            ))
        }
        META_TABLE => {
            let payload = record::unseal(META_TABLE, key, value).map_err(err)?;
            Ok((
                format!("{}  ({} bytes)", escape(key), payload.len()),
                json!({ "key": escape(key), "value_size": payload.len() }),
            ))
        }
        LEASE_TABLE => {
            let (id, ttl, remaining) = record::decode_lease(key, value).map_err(err)?;
            Ok((
                format!("lease {id:016x}  ttl {ttl}s  remaining at checkpoint {remaining}s"),
                json!({ "id": id, "id_hex": format!("{id:x}"), "ttl": ttl, "remaining_ttl": remaining }),
            ))
        }
        ALARM_TABLE => {
            let (member, alarm) = record::decode_alarm(key, value).map_err(err)?;
            let name = match alarm {
                1 => "NOSPACE",
                2 => "CORRUPT",
                _ => "unknown",
            };
            Ok((
                format!("member {member:016x}  alarm {name}"),
                json!({ "member_id": format!("{member:x}"), "alarm": name }),
            ))
        }
        AUTH_TABLE if key == AUTH_FLAGS_KEY => {
            let (enabled, revision) = record::decode_auth_flags(value).map_err(err)?;
            Ok((
                format!("auth enabled {enabled}  auth revision {revision}"),
                json!({ "enabled": enabled, "auth_revision": revision }),
            ))
        }
        AUTH_TABLE if key.starts_with(AUTH_USER_PREFIX) => {
            let u = record::decode_auth_user(key, value).map_err(err)?;
            let roles: Vec<String> = u.roles.to_vec();
            let has_password = !u.password.is_empty();
            Ok((
                format!(
                    "user {}  roles [{}]  password {}",
                    escape(&u.name),
                    roles.join(", "),
                    if has_password { "set (hashed)" } else { "none" }
                ),
                json!({ "user": escape(&u.name), "roles": roles, "has_password": has_password }),
            ))
        }
        AUTH_TABLE if key.starts_with(AUTH_ROLE_PREFIX) => {
            let r = record::decode_auth_role(key, value).map_err(err)?;
            let perms: Vec<String> = r
                .key_permission
                .iter()
                .map(|p| {
                    let kind = match p.perm_type {
                        0 => "READ",
                        1 => "WRITE",
                        2 => "READWRITE",
                        _ => "?",
                    };
                    if p.range_end.is_empty() {
                        format!("{kind} {}", escape(&p.key))
                    } else {
                        format!("{kind} [{}, {})", escape(&p.key), escape(&p.range_end))
                    }
                })
                .collect();
            Ok((
                format!(
                    "role {}  permissions [{}]",
                    escape(&r.name),
                    perms.join("; ")
                ),
                json!({ "role": escape(&r.name), "permissions": perms }),
            ))
        }
        _ => Ok((
            format!("{}  ({} bytes)", escape(key), value.len()),
            json!({ "key": escape(key), "value_size": value.len() }),
        )),
    }
}

/// A history record: `rev 7_0  put  foo  create 5  version 2  lease 0  value 3 bytes`.
pub fn describe_record(rev: Revision, r: &Record<'_>) -> (String, Value) {
    let kind = match r.kind {
        RecordKind::Put => "put",
        RecordKind::Tombstone => "delete",
    };
    let line = format!(
        "rev {}_{}  {kind:<6} {}  create {}  mod {}  version {}  lease {:x}  value {} bytes",
        rev.main,
        rev.sub,
        escape(r.key),
        r.create_revision,
        rev.main,
        r.version,
        r.lease,
        r.value.len()
    );
    let row = json!({
        "revision": { "main": rev.main, "sub": rev.sub },
        "kind": kind,
        "key": escape(r.key),
        "create_revision": r.create_revision,
        "mod_revision": rev.main,
        "version": r.version,
        "lease": r.lease,
        "value_size": r.value.len(),
    });
    (line, row)
}
