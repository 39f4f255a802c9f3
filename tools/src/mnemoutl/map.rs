//! `map`: the page file as an SVG picture, for people who would rather look than read.
//! One cell per page in file order (several pages per cell on big files, showing the
//! most common use), coloured by the tree it belongs to and its kind; free pages are
//! white and leaked pages red, so fragmentation and wasted space show at a glance.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

use mnemo_storage::page::PageKind;
use mnemo_storage::{PageMap, PageUse};
use serde_json::json;

use super::target::PageFile;
use super::{io_error, Report, Result};

const COLUMNS: u64 = 64;
const CELL: u64 = 10;
/// At most this many cells; bigger files put several pages in one cell.
const MAX_CELLS: u64 = 64 * 256;
const LEGEND_LINE: u64 = 16;

/// Hues for tables, in catalog order.
const HUES: [u32; 8] = [210, 140, 30, 280, 0, 180, 60, 320];

pub fn run(path: &Path, output: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let db = file.database()?;
    let (_, map) = db.page_map().map_err(|e| file.context(e))?;
    let svg = render(&map, &file.path.display().to_string());
    std::fs::write(output, &svg).map_err(|e| io_error(output.display(), e))?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for u in &map.uses {
        *counts.entry(label(&map, *u)).or_default() += 1;
    }
    let mut text = format!(
        "wrote {} ({} pages, {} per cell)\n",
        output.display(),
        map.uses.len(),
        pages_per_cell(map.uses.len() as u64)
    );
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort();
    for (what, n) in &sorted {
        let _ = writeln!(text, "  {what:<24} {n:>10} pages");
    }
    Ok(Report::ok(
        text,
        json!({ "output": output.display().to_string(), "pages": map.uses.len(), "by_use": counts }),
    ))
}

fn pages_per_cell(pages: u64) -> u64 {
    pages.div_ceil(MAX_CELLS).max(1)
}

/// The legend's name for a page use.
fn label(map: &PageMap, u: PageUse) -> String {
    match u {
        PageUse::Header => "header".into(),
        PageUse::Free => "free".into(),
        PageUse::Unreferenced => "leaked".into(),
        PageUse::Tree { tree, kind } => {
            let name = map.trees.get(tree as usize).map_or("?", |s| s.as_str());
            format!("{name} {}", kind.name())
        }
    }
}

fn colour(u: PageUse) -> String {
    match u {
        PageUse::Header => "#000000".into(),
        PageUse::Free => "#ffffff".into(),
        PageUse::Unreferenced => "#ff0000".into(),
        PageUse::Tree { tree, kind } => {
            let (sat, light) = match kind {
                PageKind::Branch => (70, 30),
                PageKind::Leaf => (60, 50),
                PageKind::Overflow => (50, 78),
            };
            match tree {
                PageMap::CATALOG => return format!("hsl(0,0%,{}%)", light - 20),
                PageMap::FREE_DB => return format!("hsl(30,25%,{light}%)"),
                _ => {}
            }
            let hue = HUES[(tree as usize - 2) % HUES.len()];
            format!("hsl({hue},{sat}%,{light}%)")
        }
    }
}

/// The SVG document for `map`.
pub fn render(map: &PageMap, title: &str) -> String {
    let pages = map.uses.len() as u64;
    let per_cell = pages_per_cell(pages);
    let cells = pages.div_ceil(per_cell);
    let rows = cells.div_ceil(COLUMNS).max(1);
    let mut legend: Vec<PageUse> = Vec::new();
    let mut body = String::new();
    for cell in 0..cells {
        let start = (cell * per_cell) as usize;
        let end = ((cell + 1) * per_cell).min(pages) as usize;
        let mut best: Vec<(PageUse, u64)> = Vec::new();
        for u in &map.uses[start..end] {
            match best.iter_mut().find(|(b, _)| b == u) {
                Some((_, n)) => *n += 1,
                None => best.push((*u, 1)),
            }
        }
        let Some(&(u, _)) = best.iter().max_by_key(|(_, n)| *n) else {
            continue;
        };
        if !legend.contains(&u) {
            legend.push(u);
        }
        let (x, y) = ((cell % COLUMNS) * CELL, 30 + (cell / COLUMNS) * CELL);
        let _ = writeln!(
            body,
            r##"<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{}" stroke="#dddddd" stroke-width="0.5"><title>pages {start}..{end}: {}</title></rect>"##,
            colour(u),
            xml_escape(&label(map, u))
        );
    }
    legend.sort_by_key(|u| label(map, *u));
    let width = COLUMNS * CELL + 200;
    let legend_top = 30 + rows * CELL + 20;
    let height = legend_top + legend.len() as u64 * LEGEND_LINE + 10;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#fafafa"/><text x="0" y="18">{}: {pages} pages of {} bytes, {per_cell} per cell, file {} bytes</text>"##,
        xml_escape(title),
        map.page_size,
        map.file_len
    );
    svg.push_str(&body);
    for (i, u) in legend.iter().enumerate() {
        let y = legend_top + i as u64 * LEGEND_LINE;
        let _ = writeln!(
            svg,
            r##"<rect x="0" y="{y}" width="{CELL}" height="{CELL}" fill="{}" stroke="#999999"/><text x="16" y="{}">{}</text>"##,
            colour(*u),
            y + CELL,
            xml_escape(&label(map, *u))
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
