//! Segment files: names, creation (preallocated with zeros or recycled from a purged
//! segment) and the handle the writer appends through.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::StorageBackend;

use super::dir::WalDir;
use super::record::{SegmentHeader, SEGMENT_HEADER_LEN};

/// Chunk size for zero-filling a new segment.
const ZERO_CHUNK: usize = 1 << 20;

/// What a file name in the WAL directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `{id:016x}.wal`: a live segment.
    Segment(u64),
    /// `{id:016x}.spare`: a purged segment kept for recycling.
    Spare(u64),
    /// `{id:016x}.tmp`: a segment being prepared; removed at open.
    Temp(u64),
}

pub fn segment_name(id: u64) -> String {
    format!("{id:016x}.wal")
}

pub fn spare_name(id: u64) -> String {
    format!("{id:016x}.spare")
}

fn temp_name(id: u64) -> String {
    format!("{id:016x}.tmp")
}

/// Parses a WAL file name; `None` for files that are not the WAL's.
pub fn parse_name(name: &str) -> Option<FileKind> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u64::from_str_radix(stem, 16).ok()?;
    match ext {
        "wal" => Some(FileKind::Segment(id)),
        "spare" => Some(FileKind::Spare(id)),
        "tmp" => Some(FileKind::Temp(id)),
        _ => None,
    }
}

/// The segment the writer appends to.
#[derive(Debug, Clone)]
pub struct ActiveSegment {
    pub id: u64,
    pub backend: Arc<dyn StorageBackend>,
    /// Offset of the next record; everything from here on is free (zeros, stale records
    /// of an older generation, or an unacknowledged tail zeroed at recovery).
    pub pos: u64,
    pub capacity: u64,
}

/// Where a new segment's file comes from.
#[derive(Debug)]
pub enum SegmentFile<'a> {
    /// A purged segment kept for recycling.
    Spare(&'a str),
    /// `{id:016x}.tmp` for this id, already zero-filled and synced by [`preallocate`].
    Prepared(Arc<dyn StorageBackend>),
    /// Nothing ready: zero-fill a new file now.
    New,
}

/// Creates `{id:016x}.tmp` of `size` bytes of zeros and syncs it, so that appending to
/// it later never changes its size or block map (each fdatasync then flushes only
/// data). Stops early with `Interrupted` once `cancel` is set.
pub fn preallocate(
    dir: &dyn WalDir,
    id: u64,
    size: u64,
    cancel: &AtomicBool,
) -> io::Result<Arc<dyn StorageBackend>> {
    let b = dir.create(&temp_name(id))?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut off = 0u64;
    while off < size {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let n = (size - off).min(ZERO_CHUNK as u64) as usize;
        b.write_at(off, &zeros[..n])?;
        off += n as u64;
    }
    b.sync_data()?;
    Ok(b)
}

/// Makes segment `header.segment_id` durable and visible under its final name, with no
/// records, in the file `file` (of at least `size` bytes).
///
/// Crash safety: the file gets its final name only after its header is synced, and the
/// caller writes no record into it before this returns (directory synced). A crash
/// before that leaves a `.tmp` (removed at open) or a `.spare` (reused later).
pub fn prepare_segment(
    dir: &dyn WalDir,
    header: SegmentHeader,
    file: SegmentFile<'_>,
    size: u64,
) -> io::Result<ActiveSegment> {
    let id = header.segment_id;
    let (from, backend) = match file {
        SegmentFile::Spare(spare) => (spare.to_owned(), dir.open(spare)?),
        SegmentFile::Prepared(b) => (temp_name(id), b),
        SegmentFile::New => (
            temp_name(id),
            preallocate(dir, id, size, &AtomicBool::new(false))?,
        ),
    };
    backend.write_at(0, &header.encode())?;
    backend.sync_data()?;
    dir.rename(&from, &segment_name(id))?;
    dir.sync_dir()?;
    let capacity = backend.len()?;
    Ok(ActiveSegment {
        id,
        backend,
        pos: SEGMENT_HEADER_LEN as u64,
        capacity,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&segment_name(42)), Some(FileKind::Segment(42)));
        assert_eq!(parse_name(&spare_name(7)), Some(FileKind::Spare(7)));
        assert_eq!(
            parse_name(&temp_name(u64::MAX)),
            Some(FileKind::Temp(u64::MAX))
        );
        assert_eq!(parse_name("LOCK"), None);
        assert_eq!(parse_name("000000000000002a.log"), None);
        assert_eq!(parse_name("2a.wal"), None);
    }
}
