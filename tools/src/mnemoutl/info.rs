//! `inspect info`: the header, both commit slots, which commit opens, the high-water
//! mark, the file size and the free pages.

use std::fmt::Write;
use std::path::Path;

use mnemo_storage::header::Slot;
use mnemo_storage::{Database, DatabaseOptions};
use serde_json::{json, Value};

use super::target::PageFile;
use super::{human_bytes, Report, Result};

pub fn run(path: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let header = file.header()?;
    let mut text = String::new();
    let _ = writeln!(text, "file:          {}", file.path.display());
    let _ = writeln!(
        text,
        "file size:     {} ({})",
        header.file_len,
        human_bytes(header.file_len)
    );
    let _ = writeln!(text, "page size:     {}", header.page_size);
    let newest = header.newest().map(|(i, _)| i);
    let mut slots = Vec::new();
    for (i, slot) in header.slots.iter().enumerate() {
        let mark = if Some(i) == newest { " (newest)" } else { "" };
        match slot {
            Ok(s) => {
                let _ = writeln!(
                    text,
                    "slot {i}{mark}:  txn {} base txn {} page count {} catalog root {} free-db root {}",
                    s.txn,
                    s.base_txn,
                    s.page_count,
                    root(s.catalog),
                    root(s.freedb)
                );
                slots.push(slot_json(i, s, Some(i) == newest));
            }
            Err(why) => {
                let _ = writeln!(text, "slot {i}:       invalid: {why}");
                slots.push(json!({ "slot": i, "valid": false, "problem": why }));
            }
        }
    }
    let opts = DatabaseOptions {
        cache_bytes: 16 << 20,
        ..DatabaseOptions::default()
    };
    let mut out = json!({
        "file": file.path.display().to_string(),
        "file_size": header.file_len,
        "page_size": header.page_size,
        "slots": slots,
    });
    match Database::open_with_report(file.backend.clone(), opts) {
        Ok((db, report)) => {
            let _ = writeln!(text, "opens at:      txn {}", report.txn);
            if let Some(why) = &report.fell_back {
                let _ = writeln!(text, "fell back:     {why}");
            }
            let _ = writeln!(
                text,
                "verified:      {} pages written since the last durable commit",
                report.pages_verified
            );
            let stats = db.stats().map_err(|e| file.context(e))?;
            let _ = writeln!(
                text,
                "high water:    {} pages ({})",
                stats.page_count,
                human_bytes(stats.page_count * stats.page_size)
            );
            let _ = writeln!(
                text,
                "free pages:    {} ({})",
                stats.free_pages,
                human_bytes(stats.free_pages * stats.page_size)
            );
            let _ = writeln!(
                text,
                "in use:        {} ({})",
                (stats.page_count - stats.free_pages) * stats.page_size,
                human_bytes((stats.page_count - stats.free_pages) * stats.page_size)
            );
            out["opens_at_txn"] = json!(report.txn);
            out["fell_back"] = json!(report.fell_back);
            out["pages_verified"] = json!(report.pages_verified);
            out["page_count"] = json!(stats.page_count);
            out["free_pages"] = json!(stats.free_pages);
            out["size_in_use"] = json!((stats.page_count - stats.free_pages) * stats.page_size);
            Ok(Report::ok(text, out))
        }
        Err(e) => {
            let _ = writeln!(text, "cannot open:   {e}");
            out["problem"] = json!(e.to_string());
            Ok(Report {
                text,
                json: out,
                ok: false,
            })
        }
    }
}

fn root(r: Option<mnemo_storage::page::ChildRef>) -> String {
    r.map_or_else(|| "none".to_string(), |r| r.page.to_string())
}

fn slot_json(i: usize, s: &Slot, newest: bool) -> Value {
    json!({
        "slot": i,
        "valid": true,
        "newest": newest,
        "txn": s.txn,
        "base_txn": s.base_txn,
        "page_count": s.page_count,
        "catalog_root": s.catalog.map(|r| r.page),
        "freedb_root": s.freedb.map(|r| r.page),
    })
}
