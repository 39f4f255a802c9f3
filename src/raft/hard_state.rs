//! The two small files beside the WAL: the hard state (vote and purge point, durable) and
//! the committed log id (a hint, written without fsync). docs/format.md has the layouts.
//!
//! The hard state is replaced atomically: write `raft-state.tmp`, fsync it, rename it over
//! `raft-state`, fsync the directory. A missing file is the state of a fresh member; a
//! file that fails its checksum is an error (a vote must never be forgotten silently).
//!
//! The committed log id is rewritten in place on every commit advance, without fsync:
//! fsyncing it would double the fsyncs per write. It is only a lower bound that lets a
//! restart re-apply committed entries before an election; losing it or reading a stale
//! value is safe, and a torn write fails its checksum and reads as "none".

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::{LogId, Vote};

use super::codec::{put_opt_log_id, put_vote, CodecError, Reader, VOTE_LEN};

pub const HARD_STATE_FILE: &str = "raft-state";
pub const COMMITTED_FILE: &str = "raft-committed";

const HARD_MAGIC: &[u8; 8] = b"MNEMORFT";
const COMMITTED_MAGIC: &[u8; 8] = b"MNEMOCMT";
const VERSION: u32 = 1;

/// What must survive a crash besides the log: the vote, and how far the log was purged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    pub vote: Option<Vote<u64>>,
    /// The last log id physically removed from the WAL (entries up to it may be gone).
    pub purged: Option<LogId<u64>>,
}

// Format: { magic "MNEMORFT" | version u32 | vote flag u8 | vote (17 B) | purged opt log id | crc32c u32 }
fn encode_hard_state(s: &HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(HARD_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    match &s.vote {
        None => {
            out.push(0);
            out.extend_from_slice(&[0; VOTE_LEN]);
        }
        Some(v) => {
            out.push(1);
            put_vote(v, &mut out);
        }
    }
    put_opt_log_id(s.purged.as_ref(), &mut out);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_hard_state(bytes: &[u8]) -> Result<HardState, CodecError> {
    let Some(body_len) = bytes.len().checked_sub(4) else {
        return Err(CodecError("hard state too short".into()));
    };
    let (body, crc) = bytes.split_at(body_len);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != crc {
        return Err(CodecError("hard state checksum mismatch".into()));
    }
    let mut r = Reader::new(body);
    if r.bytes(8)? != HARD_MAGIC {
        return Err(CodecError("hard state magic".into()));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(CodecError(format!("hard state version {version}")));
    }
    let has_vote = r.u8()?;
    let vote = r.vote()?;
    let vote = match has_vote {
        0 => None,
        1 => Some(vote),
        t => return Err(CodecError(format!("hard state vote flag {t}"))),
    };
    let purged = r.opt_log_id()?;
    r.finish()?;
    Ok(HardState { vote, purged })
}

/// Reads the hard state in `dir`; a missing file is the default state.
pub fn read_hard_state(dir: &Path) -> io::Result<HardState> {
    match fs::read(dir.join(HARD_STATE_FILE)) {
        Ok(bytes) => decode_hard_state(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.join(HARD_STATE_FILE).display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HardState::default()),
        Err(e) => Err(e),
    }
}

/// Replaces the hard state in `dir` durably.
pub fn write_hard_state(dir: &Path, s: &HardState) -> io::Result<()> {
    let tmp = dir.join(format!("{HARD_STATE_FILE}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&encode_hard_state(s))?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(HARD_STATE_FILE))?;
    sync_dir(dir)
}

/// fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The committed-log-id hint file, kept open for in-place rewrites.
#[derive(Debug)]
pub struct CommittedFile {
    file: File,
    path: PathBuf,
}

const COMMITTED_LEN: usize = 8 + 25 + 4;

// Format: { magic "MNEMOCMT" | opt log id (1 or 25 B, zero padded to 25) | crc32c u32 }
fn encode_committed(id: Option<&LogId<u64>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(COMMITTED_LEN);
    out.extend_from_slice(COMMITTED_MAGIC);
    put_opt_log_id(id, &mut out);
    out.resize(8 + 25, 0);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_committed(bytes: &[u8]) -> Option<LogId<u64>> {
    if bytes.len() != COMMITTED_LEN || &bytes[..8] != COMMITTED_MAGIC {
        return None;
    }
    let (body, crc) = bytes.split_at(COMMITTED_LEN - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return None;
    }
    Reader::new(&body[8..]).opt_log_id().ok().flatten()
}

impl CommittedFile {
    pub fn open(dir: &Path) -> io::Result<CommittedFile> {
        let path = dir.join(COMMITTED_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok(CommittedFile { file, path })
    }

    /// The saved committed log id; `None` if absent or unreadable (it is only a hint).
    pub fn read(&self) -> Option<LogId<u64>> {
        let mut buf = vec![0u8; COMMITTED_LEN];
        match self.file.read_exact_at(&mut buf, 0) {
            Ok(()) => {
                let got = decode_committed(&buf);
                if got.is_none() {
                    tracing::warn!(path = %self.path.display(), "committed log id unreadable; ignored");
                }
                got
            }
            Err(_) => None,
        }
    }

    /// Rewrites the committed log id in place (no fsync: see the module comment).
    pub fn write(&self, id: Option<&LogId<u64>>) -> io::Result<()> {
        self.file.write_all_at(&encode_committed(id), 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    #[test]
    fn sizes_match_docs_format() {
        assert_eq!(encode_hard_state(&HardState::default()).len(), 35);
        let full = HardState {
            vote: Some(Vote::new(1, 1)),
            purged: Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
        };
        assert_eq!(encode_hard_state(&full).len(), 59);
        assert_eq!(encode_committed(None).len(), 37);
    }

    #[test]
    fn hard_state_round_trips_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_hard_state(dir.path()).unwrap(), HardState::default());
        let s = HardState {
            vote: Some(Vote::new_committed(7, 3)),
            purged: Some(LogId::new(CommittedLeaderId::new(6, 2), 1000)),
        };
        write_hard_state(dir.path(), &s).unwrap();
        assert_eq!(read_hard_state(dir.path()).unwrap(), s);
        let s2 = HardState {
            vote: Some(Vote::new(8, 1)),
            purged: None,
        };
        write_hard_state(dir.path(), &s2).unwrap();
        assert_eq!(read_hard_state(dir.path()).unwrap(), s2);

        // Any flipped bit is an error, never a silently different vote.
        let path = dir.path().join(HARD_STATE_FILE);
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            assert!(read_hard_state(dir.path()).is_err(), "byte {i}");
        }
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(read_hard_state(dir.path()).is_err());
        fs::write(&path, b"").unwrap();
        assert!(read_hard_state(dir.path()).is_err());
    }

    #[test]
    fn committed_hint_round_trips_and_degrades_to_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = CommittedFile::open(dir.path()).unwrap();
        assert_eq!(f.read(), None);
        let id = LogId::new(CommittedLeaderId::new(2, 1), 42);
        f.write(Some(&id)).unwrap();
        assert_eq!(f.read(), Some(id));
        drop(f);
        let f = CommittedFile::open(dir.path()).unwrap();
        assert_eq!(f.read(), Some(id));
        f.write(None).unwrap();
        assert_eq!(f.read(), None);
        f.write(Some(&id)).unwrap();
        let path = dir.path().join(COMMITTED_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(f.read(), None);
    }
}
