//! `inspect pages`: one line per page below the high-water mark: id, kind, the tree it
//! belongs to (or free), items, overflow values, fill, and the txn that wrote it.

use std::fmt::Write;
use std::path::Path;

use mnemo_storage::inspect::{self, PageSummary};
use mnemo_storage::{PageMap, PageUse};
use serde_json::json;

use super::target::PageFile;
use super::{Report, Result};

/// What a page is used for, in words.
pub fn use_name(map: Option<&PageMap>, id: u64) -> String {
    let Some(map) = map else {
        return "?".into();
    };
    match map.uses.get(id as usize) {
        Some(PageUse::Header) => "header".into(),
        Some(PageUse::Tree { tree, .. }) => map
            .trees
            .get(*tree as usize)
            .cloned()
            .unwrap_or_else(|| "?".into()),
        Some(PageUse::Free) => "free".into(),
        Some(PageUse::Unreferenced) => "unreferenced".into(),
        None => "past the end".into(),
    }
}

/// The kind column: what the page's header says, or why it cannot be read.
pub fn kind_name(s: &PageSummary) -> String {
    match s.kind {
        Some(k) => k.name().to_string(),
        None => format!("kind {}", s.kind_byte),
    }
}

pub fn run(path: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let header = file.header()?;
    let ps = header.page_size;
    // The map needs a commit that opens; without one, pages are listed up to the newest
    // valid slot's page count (or the file's end) with no owner.
    let opened = file.database().and_then(|db| {
        db.page_map()
            .map(|(_, map)| map)
            .map_err(|e| file.context(e))
    });
    let (map, open_problem) = match opened {
        Ok(map) => (Some(map), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let file_pages = header.file_len / ps as u64;
    let page_count = match (&map, header.newest()) {
        (Some(m), _) => m.page_count,
        (None, Some((_, slot))) => slot.page_count,
        (None, None) => file_pages,
    }
    .min(file_pages);

    let mut text = String::new();
    if let Some(p) = &open_problem {
        let _ = writeln!(text, "# cannot open the file ({p}); owners unknown");
    }
    let _ = writeln!(
        text,
        "{:>8}  {:<9} {:<14} {:>6} {:>8} {:>6} {:>10}  problem",
        "page", "kind", "tree", "items", "overflow", "fill", "txn"
    );
    let mut rows = Vec::new();
    let _ = writeln!(
        text,
        "{:>8}  {:<9} {:<14} {:>6} {:>8} {:>6} {:>10}",
        0, "header", "header", "-", "-", "-", "-"
    );
    rows.push(json!({ "page": 0, "kind": "header", "tree": "header" }));
    for id in 1..page_count {
        let s = match inspect::read_page(file.backend.as_ref(), ps, id) {
            Ok(bytes) => inspect::summarize_page(&bytes, id),
            Err(e) => {
                let _ = writeln!(text, "{id:>8}  unreadable: {e}");
                rows.push(json!({ "page": id, "problem": e.to_string() }));
                continue;
            }
        };
        let owner = use_name(map.as_ref(), id);
        let problem = s.problem.clone();
        let free = owner == "free";
        if free {
            // A free page's bytes are whatever it held last: only the txn says anything.
            let _ = writeln!(
                text,
                "{id:>8}  {:<9} {owner:<14} {:>6} {:>8} {:>6} {:>10}",
                "free", "-", "-", "-", s.txn
            );
            rows.push(json!({ "page": id, "kind": "free", "tree": "free", "txn": s.txn }));
            continue;
        }
        let kind = kind_name(&s);
        let _ = writeln!(
            text,
            "{id:>8}  {kind:<9} {owner:<14} {:>6} {:>8} {:>5.1}% {:>10}  {}",
            s.count,
            s.overflow_values,
            s.fill(ps) * 100.0,
            s.txn,
            problem.as_deref().unwrap_or("")
        );
        rows.push(json!({
            "page": id,
            "kind": kind,
            "tree": owner,
            "items": s.count,
            "overflow_values": s.overflow_values,
            "fill": s.fill(ps),
            "txn": s.txn,
            "problem": problem,
        }));
    }
    let ok = open_problem.is_none();
    Ok(Report {
        text,
        json: json!({ "page_size": ps, "page_count": page_count, "pages": rows, "problem": open_problem }),
        ok,
    })
}
