//! `inspect stats`: page counts by kind, free space, tree depth, fill factor, and space
//! by table.

use std::fmt::Write;
use std::path::Path;

use mnemo_storage::TreeStats;
use serde_json::json;

use super::target::PageFile;
use super::{human_bytes, Report, Result};

pub fn run(path: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let db = file.database()?;
    let s = db.stats().map_err(|e| file.context(e))?;
    let ps = s.page_size;
    let mut text = String::new();
    let line = |text: &mut String, what: &str, pages: u64| {
        let _ = writeln!(
            text,
            "{what:<16} {pages:>10} pages  {:>10}",
            human_bytes(pages * ps)
        );
    };
    let _ = writeln!(text, "file size        {:>10}", human_bytes(s.file_len));
    let _ = writeln!(text, "page size        {ps:>10}");
    let _ = writeln!(text, "commit (txn)     {:>10}", s.txn);
    line(&mut text, "high water", s.page_count);
    line(&mut text, "leaf", s.leaf_pages);
    line(&mut text, "branch", s.branch_pages);
    line(&mut text, "overflow", s.overflow_pages);
    line(&mut text, "free", s.free_pages);
    let _ = writeln!(text, "max depth        {:>10}", s.max_depth());
    let _ = writeln!(
        text,
        "fill factor      {:>9.1}%  (bytes in use in leaf and branch pages)",
        s.fill_factor() * 100.0
    );
    let _ = writeln!(text, "\nspace by tree:");
    let tree = |name: &str, t: &TreeStats| {
        json!({
            "tree": name,
            "entries": t.entries,
            "pages": t.pages(),
            "bytes": t.pages() * ps,
            "depth": t.depth,
            "overflow_bytes": t.overflow_bytes,
            "fill": fill(t, ps),
        })
    };
    let mut rows = vec![tree("(catalog)", &s.catalog), tree("(free db)", &s.freedb)];
    let all = [("(catalog)", &s.catalog), ("(free db)", &s.freedb)]
        .into_iter()
        .chain(s.tables.iter().map(|(n, t)| (n.as_str(), t)));
    for (name, t) in all {
        let _ = writeln!(
            text,
            "  {name:<14} {:>10} entries {:>8} pages {:>10}  depth {}  fill {:.1}%",
            t.entries,
            t.pages(),
            human_bytes(t.pages() * ps),
            t.depth,
            fill(t, ps) * 100.0
        );
    }
    rows.extend(s.tables.iter().map(|(n, t)| tree(n, t)));
    Ok(Report::ok(
        text,
        json!({
            "file_size": s.file_len,
            "page_size": ps,
            "txn": s.txn,
            "page_count": s.page_count,
            "leaf_pages": s.leaf_pages,
            "branch_pages": s.branch_pages,
            "overflow_pages": s.overflow_pages,
            "free_pages": s.free_pages,
            "max_depth": s.max_depth(),
            "fill_factor": s.fill_factor(),
            "trees": rows,
        }),
    ))
}

/// Fraction of a tree's leaf and branch bytes in use.
fn fill(t: &TreeStats, page_size: u64) -> f64 {
    let pages = t.leaf_pages + t.branch_pages;
    if pages == 0 {
        0.0
    } else {
        t.used_bytes as f64 / (pages * page_size) as f64
    }
}
