//! The storage engine's error type.

use std::fmt;
use std::io;

/// Where a corruption was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The page file header (page 0) or one of its commit slots.
    Header,
    /// A page of the page file.
    Page(u64),
    /// A WAL segment file and a byte offset inside it.
    Segment { file: String, offset: u64 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header => write!(f, "header"),
            Location::Page(p) => write!(f, "page {p}"),
            Location::Segment { file, offset } => write!(f, "segment {file} at offset {offset}"),
        }
    }
}

/// Every error the storage engine returns.
#[derive(Debug)]
pub enum StorageError {
    /// The operating system refused an operation.
    Io(io::Error),
    /// Bytes on disk are not what the format allows.
    Corrupted { location: Location, reason: String },
    /// A caller-supplied argument is outside what the engine accepts.
    InvalidArgument(String),
    /// The named table does not exist.
    TableNotFound(String),
    /// The database or log was closed, or a previous write failed and it refuses more work.
    Closed,
}

impl StorageError {
    pub(crate) fn corrupted(location: Location, reason: impl Into<String>) -> Self {
        StorageError::Corrupted {
            location,
            reason: reason.into(),
        }
    }

    #[allow(dead_code)] // for the page file
    pub(crate) fn page(page: u64, reason: impl Into<String>) -> Self {
        Self::corrupted(Location::Page(page), reason)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io(e) => write!(f, "I/O error: {e}"),
            StorageError::Corrupted { location, reason } => {
                write!(f, "corruption at {location}: {reason}")
            }
            StorageError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            StorageError::TableNotFound(t) => write!(f, "table not found: {t}"),
            StorageError::Closed => write!(f, "storage is closed"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        StorageError::Io(e)
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
