//! What a PATH argument names, and opening it without disturbing a running member.
//!
//! A data directory holds `member/db` (the page file) and `member/wal/`; a member
//! directory holds `db` and `wal/`; anything else is taken as a page file itself (a
//! snapshot). Inside a data directory the member's lock is taken first, so a running
//! member is refused, and a member cannot start while a tool is reading its files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mnemo::server::DirLock;
use mnemo_storage::inspect::{self, FileHeader};
use mnemo_storage::{Database, DatabaseOptions, FileBackend, StorageBackend};

use super::{io_error, Result, ToolError};

/// Page cache for offline reads: enough for the upper levels of every tree.
const CACHE_BYTES: usize = 16 << 20;

/// A page file opened for reading.
#[derive(Debug)]
pub struct PageFile {
    pub path: PathBuf,
    pub backend: Arc<dyn StorageBackend>,
    _lock: Option<DirLock>,
}

impl PageFile {
    /// Resolves `path` and opens its page file read-only.
    pub fn open(path: &Path) -> Result<PageFile> {
        let (file, member_dir) = resolve(path, "db")?;
        let lock = member_dir.as_deref().map(lock_member).transpose()?;
        let f = std::fs::File::open(&file).map_err(|e| io_error(file.display(), e))?;
        if !f
            .metadata()
            .map_err(|e| io_error(file.display(), e))?
            .is_file()
        {
            return Err(ToolError(format!("{} is not a file", file.display())));
        }
        let backend = Arc::new(FileBackend::new(f).map_err(|e| io_error(file.display(), e))?);
        Ok(PageFile {
            path: file,
            backend,
            _lock: lock,
        })
    }

    /// The header and commit slots, read raw.
    pub fn header(&self) -> Result<FileHeader> {
        inspect::read_header(self.backend.as_ref()).map_err(|e| self.context(e))
    }

    /// Opens the page file as a database (recovering the newest usable commit).
    pub fn database(&self) -> Result<Database> {
        let opts = DatabaseOptions {
            cache_bytes: CACHE_BYTES,
            ..DatabaseOptions::default()
        };
        Database::open(self.backend.clone(), opts).map_err(|e| self.context(e))
    }

    /// An error about this file, naming it.
    pub fn context(&self, e: impl std::fmt::Display) -> ToolError {
        ToolError(format!("{}: {e}", self.path.display()))
    }
}

/// The member directory's lock, or an error saying that a member is running.
pub fn lock_member(member_dir: &Path) -> Result<DirLock> {
    DirLock::acquire(member_dir).map_err(|e| {
        ToolError(format!(
            "{}: {e}; stop the member that uses it first",
            member_dir.display()
        ))
    })
}

/// Resolves `path` to the entry `name` (`db` or `wal`) of a member, and the member
/// directory when `path` is a data or member directory. A plain file resolves to itself.
pub fn resolve(path: &Path, name: &str) -> Result<(PathBuf, Option<PathBuf>)> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path.display(), e))?;
    if !meta.is_dir() {
        return Ok((path.to_path_buf(), None));
    }
    for member in [path.join("member"), path.to_path_buf()] {
        let entry = member.join(name);
        if entry.exists() {
            return Ok((entry, Some(member)));
        }
    }
    if name == "wal" && is_wal_dir(path) {
        return Ok((path.to_path_buf(), None));
    }
    Err(ToolError(format!(
        "{}: neither a data directory (member/{name}) nor a member directory ({name})",
        path.display()
    )))
}

/// Whether `dir` holds WAL segment files.
fn is_wal_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                matches!(
                    mnemo_storage::wal::segment_kind(&name.to_string_lossy()),
                    Some(mnemo_storage::wal::FileKind::Segment(_))
                )
            })
        })
        .unwrap_or(false)
}
