//! `defrag`: rewrites a page file compactly into a new file beside it, checks the copy,
//! and renames it over the original (then syncs the directory), so a crash at any point
//! leaves either the old file or the new one. Reports the size before and after.
//!
//! The running server defragments online instead (Maintenance.Defragment moves pages in
//! small steps while writes go on); this is the offline counterpart for a stopped member
//! or a snapshot file.

use std::path::Path;

use mnemo_storage::{Database, DatabaseOptions};
use serde_json::json;

use super::snapshot::sync_dir;
use super::target::PageFile;
use super::{human_bytes, io_error, Report, Result, ToolError};

/// Entries copied per write transaction.
const ENTRIES_PER_COMMIT: usize = 16 * 1024;

pub fn run(path: &Path) -> Result<Report> {
    let file = PageFile::open(path)?;
    let src = file.database()?;
    let before = src.file_len().map_err(|e| file.context(e))?;
    let report = src.check().map_err(|e| file.context(e))?;
    if !report.is_ok() {
        return Err(file.context(format!(
            "refusing to defragment a damaged file (run `mnemoutl check`): {}",
            report.problems.join("; ")
        )));
    }
    let tmp = file.path.with_extension("defrag");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(tmp.display(), e)),
    }
    let copied = (|| -> Result<u64> {
        let opts = DatabaseOptions {
            page_size: src.page_size(),
            ..DatabaseOptions::default()
        };
        let out = Database::open_path(&tmp, opts)?;
        let n = src
            .begin_read()?
            .copy_into(&out, None, ENTRIES_PER_COMMIT)?;
        let check = out.check()?;
        if !check.is_ok() {
            return Err(ToolError(format!(
                "the copy does not check: {}",
                check.problems.join("; ")
            )));
        }
        Ok(n)
    })();
    let entries = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(file.context(e));
        }
    };
    let after = std::fs::metadata(&tmp)
        .map_err(|e| io_error(tmp.display(), e))?
        .len();
    std::fs::rename(&tmp, &file.path).map_err(|e| io_error(file.path.display(), e))?;
    if let Some(dir) = file.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir)?;
    }
    let text = format!(
        "defragmented {}: {} -> {} ({entries} entries)\n",
        file.path.display(),
        human_bytes(before),
        human_bytes(after)
    );
    Ok(Report::ok(
        text,
        json!({
            "file": file.path.display().to_string(),
            "size_before": before,
            "size_after": after,
            "entries": entries,
        }),
    ))
}
