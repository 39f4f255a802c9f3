//! `inspect page N`: one page decoded: its header, whether it validates, and its
//! entries, children or overflow data; `--raw` adds a hex dump.

use std::fmt::Write;
use std::path::Path;

use mnemo_storage::inspect::{self, ItemValue, PageContent};
use serde_json::json;

use super::pages::{kind_name, use_name};
use super::target::PageFile;
use super::{escape, Report, Result, ToolError};

/// Values longer than this are shown cut, with their length.
const SHOW_VALUE: usize = 64;

pub fn run(path: &Path, id: u64, raw: bool) -> Result<Report> {
    let file = PageFile::open(path)?;
    let header = file.header()?;
    let ps = header.page_size;
    if id == 0 {
        return Err(ToolError(
            "page 0 is the header and commit slots: see `mnemoutl inspect info`".into(),
        ));
    }
    let bytes = inspect::read_page(file.backend.as_ref(), ps, id).map_err(|e| file.context(e))?;
    let s = inspect::summarize_page(&bytes, id);
    let map = file
        .database()
        .ok()
        .and_then(|db| db.page_map().ok().map(|(_, m)| m));
    let owner = use_name(map.as_ref(), id);
    let mut text = String::new();
    let _ = writeln!(text, "page:      {id} (offset {})", id * ps as u64);
    let _ = writeln!(text, "kind:      {}", kind_name(&s));
    let _ = writeln!(text, "tree:      {owner}");
    let _ = writeln!(text, "txn:       {}", s.txn);
    let _ = writeln!(text, "count:     {}", s.count);
    let _ = writeln!(text, "checksum:  {:#010x}", s.stored_crc);
    let _ = writeln!(text, "fill:      {:.1}%", s.fill(ps) * 100.0);
    if let Some(p) = &s.problem {
        let note = if owner == "free" {
            " (a free page: its old content is not checked)"
        } else {
            ""
        };
        let _ = writeln!(text, "problem:   {p}{note}");
    }
    let mut out = json!({
        "page": id,
        "kind": kind_name(&s),
        "tree": owner,
        "txn": s.txn,
        "count": s.count,
        "checksum": s.stored_crc,
        "fill": s.fill(ps),
        "problem": s.problem,
    });
    if let Ok(content) = inspect::decode_page(&bytes, id) {
        let kv = owner == mnemo::mvcc::record::KV_TABLE;
        out["content"] = content_json(&content, kv);
        write_content(&mut text, &content, kv);
    }
    if raw {
        let _ = writeln!(text, "bytes:");
        text.push_str(&hex_dump(&bytes));
        out["hex"] = json!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    }
    Ok(Report::ok(text, out))
}

/// A key for display: a revision in the kv table, escaped bytes elsewhere.
fn show_key(key: &[u8], kv: bool) -> String {
    match mnemo::mvcc::Revision::decode(key) {
        Some(r) if kv => format!("rev {}_{}", r.main, r.sub),
        _ => escape(key),
    }
}

fn show_value(v: &[u8]) -> String {
    if v.len() <= SHOW_VALUE {
        escape(v)
    } else {
        format!("{}... ({} bytes)", escape(&v[..SHOW_VALUE]), v.len())
    }
}

fn write_content(text: &mut String, content: &PageContent, kv: bool) {
    match content {
        PageContent::Leaf(items) => {
            let _ = writeln!(text, "entries:");
            for (i, item) in items.iter().enumerate() {
                let value = match &item.value {
                    ItemValue::Inline(v) => show_value(v),
                    ItemValue::Overflow(r) => format!(
                        "overflow from page {}, {} bytes, crc {:#010x}",
                        r.first, r.len, r.crc
                    ),
                };
                let _ = writeln!(text, "  {i:>4}  {}  =>  {value}", show_key(&item.key, kv));
            }
        }
        PageContent::Branch {
            children,
            separators,
        } => {
            let _ = writeln!(text, "children:");
            for (i, c) in children.iter().enumerate() {
                let from = match i {
                    0 => "(start)".to_string(),
                    _ => show_key(&separators[i - 1], kv),
                };
                let _ = writeln!(
                    text,
                    "  {i:>4}  page {:<10} crc {:#010x}  keys from {from}",
                    c.page, c.crc
                );
            }
        }
        PageContent::Overflow { next, data } => {
            let next = if *next == 0 {
                "none (end of chain)".to_string()
            } else {
                next.to_string()
            };
            let _ = writeln!(text, "next page: {next}");
            let _ = writeln!(text, "data:      {} bytes", data.len());
        }
    }
}

fn content_json(content: &PageContent, kv: bool) -> serde_json::Value {
    match content {
        PageContent::Leaf(items) => json!({
            "entries": items.iter().map(|item| match &item.value {
                ItemValue::Inline(v) => json!({
                    "key": show_key(&item.key, kv),
                    "value_len": v.len(),
                }),
                ItemValue::Overflow(r) => json!({
                    "key": show_key(&item.key, kv),
                    "value_len": r.len,
                    "overflow_first_page": r.first,
                }),
            }).collect::<Vec<_>>()
        }),
        PageContent::Branch {
            children,
            separators,
        } => json!({
            "children": children.iter().map(|c| json!({"page": c.page, "crc": c.crc})).collect::<Vec<_>>(),
            "separators": separators.iter().map(|k| show_key(k, kv)).collect::<Vec<_>>(),
        }),
        PageContent::Overflow { next, data } => json!({ "next": next, "data_len": data.len() }),
    }
}

/// 16 bytes a line: offset, hex, printable ASCII.
fn hex_dump(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (n, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(s, "  {:06x}  ", n * 16);
        for b in chunk {
            let _ = write!(s, "{b:02x} ");
        }
        for _ in chunk.len()..16 {
            s.push_str("   ");
        }
        s.push(' ');
        for &b in chunk {
            s.push(if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            });
        }
        s.push('\n');
    }
    s
}
