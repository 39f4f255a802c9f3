//! `inspect tables`: every table with its entry count, pages and depth.

use std::fmt::Write;
use std::path::Path;

use serde_json::json;

use super::target::PageFile;
use super::{human_bytes, Report, Result};

pub fn run(path: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let db = file.database()?;
    let stats = db.stats().map_err(|e| file.context(e))?;
    let ps = stats.page_size;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<16} {:>10} {:>8} {:>8} {:>9} {:>6} {:>10}",
        "table", "entries", "leaves", "branches", "overflow", "depth", "size"
    );
    let mut rows = Vec::new();
    for (name, t) in &stats.tables {
        let _ = writeln!(
            text,
            "{:<16} {:>10} {:>8} {:>8} {:>9} {:>6} {:>10}",
            name,
            t.entries,
            t.leaf_pages,
            t.branch_pages,
            t.overflow_pages,
            t.depth,
            human_bytes(t.pages() * ps)
        );
        rows.push(json!({
            "table": name,
            "entries": t.entries,
            "leaf_pages": t.leaf_pages,
            "branch_pages": t.branch_pages,
            "overflow_pages": t.overflow_pages,
            "depth": t.depth,
            "bytes": t.pages() * ps,
        }));
    }
    Ok(Report::ok(text, json!({ "tables": rows })))
}
