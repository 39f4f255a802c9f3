//! `inspect wal`: the WAL's segments and records, like etcd-dump-logs: per segment its
//! header, record count, index and term range, and how it ends (zero-filled space, stale
//! records of a recycled segment, or a damaged record and where); with `--records`, one
//! line per record with its sequence number, index, term, entry type and commands.
//!
//! It reads the files as they are and changes nothing; the rules for what is live follow
//! recovery (docs/wal.md): a segment's records continue its first sequence number one
//! by one, and the first record that does not ends the segment's live part.

use std::fmt::Write;
use std::path::Path;

use mnemo::command::Op;
use mnemo::raft::codec::decode_entry;
use mnemo_storage::wal::record::{
    decode_record, framed_len, Decoded, RecordKind, SegmentHeader, NO_INDEX, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use mnemo_storage::wal::{segment_kind, FileKind};
use openraft::EntryPayload;
use serde_json::{json, Value};

use super::target::{lock_member, resolve};
use super::{escape, io_error, Report, Result};

pub fn run(path: &Path, records: bool) -> Result<Report> {
    let (dir, member_dir) = resolve(path, "wal")?;
    let _lock = member_dir.as_deref().map(lock_member).transpose()?;
    let mut segments = Vec::new();
    let (mut spares, mut temps) = (0, 0);
    for e in std::fs::read_dir(&dir).map_err(|e| io_error(dir.display(), e))? {
        let e = e.map_err(|e| io_error(dir.display(), e))?;
        match segment_kind(&e.file_name().to_string_lossy()) {
            Some(FileKind::Segment(id)) => segments.push((id, e.path())),
            Some(FileKind::Spare(_)) => spares += 1,
            Some(FileKind::Temp(_)) => temps += 1,
            None => {}
        }
    }
    segments.sort();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "wal {}: {} segments, {spares} spare, {temps} temporary",
        dir.display(),
        segments.len()
    );
    let mut ok = true;
    let mut out = Vec::new();
    let mut prev_id: Option<u64> = None;
    for (id, path) in &segments {
        if let Some(p) = prev_id {
            if *id != p + 1 {
                ok = false;
                let _ = writeln!(
                    text,
                    "PROBLEM: segment {id:016x} follows {p:016x}: a segment is missing"
                );
            }
        }
        prev_id = Some(*id);
        let bytes = std::fs::read(path).map_err(|e| io_error(path.display(), e))?;
        let seg = scan_segment(*id, &bytes, records);
        ok &= seg.problem.is_none();
        text.push_str(&seg.text);
        out.push(seg.json);
    }
    Ok(Report {
        text,
        json: json!({ "dir": dir.display().to_string(), "segments": out, "spares": spares, "temporary": temps }),
        ok,
    })
}

struct SegmentScan {
    text: String,
    json: Value,
    problem: Option<String>,
}

/// Reads one segment's records, as recovery would, without changing anything.
fn scan_segment(id: u64, bytes: &[u8], with_records: bool) -> SegmentScan {
    let mut text = String::new();
    let name = format!("{id:016x}.wal");
    let header = match SegmentHeader::decode(bytes) {
        Ok(h) => h,
        Err(why) => {
            let _ = writeln!(text, "segment {name}: PROBLEM: {why}");
            return SegmentScan {
                text,
                json: json!({ "segment": name, "problem": why }),
                problem: Some(why.to_string()),
            };
        }
    };
    let mut problem = None;
    if header.segment_id != id {
        problem = Some(format!(
            "header names segment {:016x}, file name {name}",
            header.segment_id
        ));
    }
    let mut pos = SEGMENT_HEADER_LEN;
    let mut seq = header.first_seq;
    let (mut entries, mut truncations) = (0u64, 0u64);
    let (mut first_index, mut last_index) = (None, None);
    let (mut first_term, mut last_term) = (None, None);
    let mut lines = String::new();
    let mut rows = Vec::new();
    let end = loop {
        match decode_record(bytes, pos) {
            Decoded::Zero => break format!("zero-filled from offset {pos}"),
            Decoded::Invalid if pos + RECORD_HEADER_LEN > bytes.len() => {
                break format!("end of file at offset {pos}")
            }
            Decoded::Invalid => {
                break format!(
                    "no valid record at offset {pos} (a torn tail if it is the last segment, \
                     otherwise damage)"
                )
            }
            Decoded::Valid(h) if h.seq != seq => {
                break format!(
                    "stale record (seq {}, expected {seq}) at offset {pos}: space of a recycled segment",
                    h.seq
                )
            }
            Decoded::Valid(h) => {
                let payload = &bytes[pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + h.len as usize];
                // The record's checksum (verified by decode_record), for the listing.
                let crc = bytes
                    .get(pos..pos + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_le_bytes);
                match h.kind {
                    RecordKind::Entry => {
                        entries += 1;
                        first_index.get_or_insert(h.index);
                        last_index = Some(h.index);
                        let (what, term, row) = describe_entry(h.index, h.entry_type, payload);
                        if let Some(t) = term {
                            first_term.get_or_insert(t);
                            last_term = Some(t);
                        }
                        if with_records {
                            let _ = writeln!(
                                lines,
                                "  seq {:<8} index {:<8} term {:<4} {:>7} B  crc {crc:08x}  {what}",
                                h.seq,
                                h.index,
                                term.map_or("?".to_string(), |t| t.to_string()),
                                h.len
                            );
                            rows.push(json!({ "seq": h.seq, "index": h.index, "term": term, "len": h.len, "crc": crc, "entry": row }));
                        }
                    }
                    RecordKind::Truncate => {
                        truncations += 1;
                        if with_records {
                            let _ = writeln!(
                                lines,
                                "  seq {:<8} crc {crc:08x}  truncate: entries from index {} are discarded",
                                h.seq, h.index
                            );
                            rows.push(json!({ "seq": h.seq, "crc": crc, "truncate_from": h.index }));
                        }
                    }
                }
                pos += framed_len(h.len as usize);
                seq += 1;
            }
        }
    };
    let first = if header.first_index == NO_INDEX {
        "none".to_string()
    } else {
        header.first_index.to_string()
    };
    let _ = writeln!(
        text,
        "segment {name}: first index {first}, first seq {}, {entries} entries ({}..{}), \
         terms {}..{}, {truncations} truncations; {end}",
        header.first_seq,
        first_index.map_or("-".into(), |i: u64| i.to_string()),
        last_index.map_or("-".into(), |i: u64| i.to_string()),
        first_term.map_or("-".into(), |t: u64| t.to_string()),
        last_term.map_or("-".into(), |t: u64| t.to_string()),
    );
    if let Some(p) = &problem {
        let _ = writeln!(text, "  PROBLEM: {p}");
    }
    text.push_str(&lines);
    SegmentScan {
        text,
        json: json!({
            "segment": name,
            "first_index": (header.first_index != NO_INDEX).then_some(header.first_index),
            "first_seq": header.first_seq,
            "entries": entries,
            "truncations": truncations,
            "index_range": [first_index, last_index],
            "term_range": [first_term, last_term],
            "end": end,
            "problem": problem,
            "records": rows,
        }),
        problem,
    }
}

/// A raft entry in words, its term, and as JSON.
fn describe_entry(index: u64, entry_type: u8, payload: &[u8]) -> (String, Option<u64>, Value) {
    let entry = match decode_entry(index, entry_type, payload) {
        Ok(e) => e,
        Err(e) => {
            let why = format!("undecodable entry: {e}");
            return (why.clone(), None, json!({ "problem": why }));
        }
    };
    let term = entry.log_id.leader_id.term;
    match &entry.payload {
        EntryPayload::Blank => (
            "blank (a new leader's first entry)".into(),
            Some(term),
            json!({ "type": "blank" }),
        ),
        EntryPayload::Membership(m) => {
            let voters: Vec<String> = m.voter_ids().map(|id| format!("{id:x}")).collect();
            let text = format!("membership: voters {}", voters.join(","));
            (
                text,
                Some(term),
                json!({ "type": "membership", "voters": voters }),
            )
        }
        EntryPayload::Normal(p) => {
            let ops: Vec<String> = p
                .commands
                .iter()
                .map(|c| describe_op(c.op.as_ref()))
                .collect();
            let text = format!("normal: {} commands: {}", ops.len(), ops.join("; "));
            (
                text,
                Some(term),
                json!({ "type": "normal", "commands": ops }),
            )
        }
    }
}

fn describe_op(op: Option<&Op>) -> String {
    match op {
        None => "empty".into(),
        Some(Op::Put(p)) => format!("put {} ({} bytes)", escape(&p.key), p.value.len()),
        Some(Op::DeleteRange(d)) => format!("delete {}", range(&d.key, &d.range_end)),
        Some(Op::Txn(t)) => format!(
            "txn ({} compares, {} success ops, {} failure ops)",
            t.compare.len(),
            t.success.len(),
            t.failure.len()
        ),
        Some(Op::Compaction(c)) => format!("compact at {}", c.revision),
        Some(Op::LeaseGrant(g)) => format!("lease grant {:x} ttl {}", g.id, g.ttl),
        Some(Op::LeaseRevoke(r)) => format!("lease revoke {:x}", r.id),
        Some(Op::LeaseCheckpoint(c)) => {
            format!("lease checkpoint ({} leases)", c.checkpoints.len())
        }
        Some(Op::Alarm(a)) => format!("alarm action {} type {}", a.action, a.alarm),
        Some(Op::AuthEnable(_)) => "auth enable".into(),
        Some(Op::AuthDisable(_)) => "auth disable".into(),
        // Password hashes are not shown.
        Some(Op::UserAdd(u)) => format!("user add {}", u.name),
        Some(Op::UserDelete(u)) => format!("user delete {}", u.name),
        Some(Op::UserChangePassword(u)) => format!("user change password {}", u.name),
        Some(Op::UserGrantRole(g)) => format!("user {} grant role {}", g.user, g.role),
        Some(Op::UserRevokeRole(r)) => format!("user {} revoke role {}", r.name, r.role),
        Some(Op::RoleAdd(r)) => format!("role add {}", r.name),
        Some(Op::RoleDelete(r)) => format!("role delete {}", r.role),
        Some(Op::RoleGrantPermission(g)) => match &g.perm {
            Some(p) => format!(
                "role {} grant permission {} on {}",
                g.name,
                p.perm_type,
                range(&p.key, &p.range_end)
            ),
            None => format!("role {} grant permission (none given)", g.name),
        },
        Some(Op::RoleRevokePermission(r)) => format!(
            "role {} revoke permission on {}",
            r.role,
            range(&r.key, &r.range_end)
        ),
    }
}

fn range(key: &[u8], end: &[u8]) -> String {
    if end.is_empty() {
        escape(key)
    } else {
        format!("[{}, {})", escape(key), escape(end))
    }
}
