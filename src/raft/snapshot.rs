//! The snapshot directory `<member dir>/snap/`: the latest snapshot's data file (a
//! point-in-time copy of the store's page file) and its metadata file.
//!
//! `snapshot.meta` is the commit point: it names the data file, and is replaced
//! atomically (tmp, fsync, rename, fsync the directory) only after the data file is
//! durable. Snapshot files (`*.snap`, `*.snap.tmp`) that it does not name are leftovers of
//! an older or interrupted snapshot and are removed; other files are never touched (the
//! server may keep the store's page file here, as etcd keeps `member/snap/db`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use openraft::SnapshotMeta;

use super::codec::{
    decode_stored_membership, encode_stored_membership, put_opt_log_id, CodecError, Reader,
};
use super::hard_state::sync_dir;
use super::Member;

pub const SNAP_DIR: &str = "snap";
const META_FILE: &str = "snapshot.meta";
/// Where a snapshot arriving from a leader is written before it is installed.
pub const RECEIVING_FILE: &str = "receiving.snap.tmp";
const MAGIC: &[u8; 8] = b"MNEMOSNP";
const VERSION: u32 = 1;

/// The snapshot directory.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

// Format: { magic "MNEMOSNP" | version u32 | last log id opt | membership len u32 | stored membership
//           | snapshot id str | data file str | crc32c u32 }, str = { len u32 | utf-8 }
fn encode_meta(meta: &SnapshotMeta<u64, Member>, data_file: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    put_opt_log_id(meta.last_log_id.as_ref(), &mut out);
    let m = encode_stored_membership(&meta.last_membership);
    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    out.extend_from_slice(&m);
    for s in [meta.snapshot_id.as_str(), data_file] {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_meta(bytes: &[u8]) -> Result<(SnapshotMeta<u64, Member>, String), CodecError> {
    let Some(body_len) = bytes.len().checked_sub(4) else {
        return Err(CodecError("snapshot meta too short".into()));
    };
    let (body, crc) = bytes.split_at(body_len);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(CodecError("snapshot meta checksum mismatch".into()));
    }
    let mut r = Reader::new(body);
    if r.bytes(8)? != MAGIC || r.u32()? != VERSION {
        return Err(CodecError("snapshot meta magic or version".into()));
    }
    let last_log_id = r.opt_log_id()?;
    let n = r.u32()? as usize;
    let last_membership = decode_stored_membership(r.bytes(n)?)?;
    let mut strings = Vec::with_capacity(2);
    for _ in 0..2 {
        let n = r.u32()? as usize;
        let s = String::from_utf8(r.bytes(n)?.to_vec())
            .map_err(|_| CodecError("snapshot meta string is not UTF-8".into()))?;
        strings.push(s);
    }
    r.finish()?;
    let data_file = strings.pop().unwrap_or_default();
    let snapshot_id = strings.pop().unwrap_or_default();
    if data_file.is_empty() || data_file.contains('/') || data_file == META_FILE {
        return Err(CodecError(format!("snapshot data file name {data_file:?}")));
    }
    Ok((
        SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        },
        data_file,
    ))
}

impl SnapshotDir {
    pub fn open(member_dir: &Path) -> io::Result<SnapshotDir> {
        let dir = member_dir.join(SNAP_DIR);
        fs::create_dir_all(&dir)?;
        Ok(SnapshotDir { dir })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The data file name for a snapshot id.
    pub fn data_file(snapshot_id: &str) -> String {
        format!("{snapshot_id}.snap")
    }

    /// The latest snapshot: its metadata and data file path.
    pub fn current(&self) -> io::Result<Option<(SnapshotMeta<u64, Member>, PathBuf)>> {
        let bytes = match fs::read(self.dir.join(META_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (meta, data) = decode_meta(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.dir.join(META_FILE).display()),
            )
        })?;
        Ok(Some((meta, self.dir.join(data))))
    }

    /// Makes the (durable) data file `data_file` the current snapshot, then removes every
    /// other snapshot file in the directory but `keep`.
    pub fn commit(
        &self,
        meta: &SnapshotMeta<u64, Member>,
        data_file: &str,
        keep: Option<&str>,
    ) -> io::Result<()> {
        let tmp = self.dir.join(format!("{META_FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&encode_meta(meta, data_file))?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(META_FILE))?;
        sync_dir(&self.dir)?;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.ends_with(".snap") || name.ends_with(".snap.tmp");
            if ours && name != data_file && Some(name.as_ref()) != keep {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};
    use std::collections::BTreeSet;

    #[test]
    fn meta_round_trips_and_checks() {
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 77)),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(1, 1), 0)),
                Membership::new(vec![BTreeSet::from([1])], ()),
            ),
            snapshot_id: "3-77-1".into(),
        };
        let bytes = encode_meta(&meta, "3-77-1.snap");
        let (back, file) = decode_meta(&bytes).unwrap();
        assert_eq!(back, meta);
        assert_eq!(file, "3-77-1.snap");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 4;
            assert!(decode_meta(&bad).is_err(), "byte {i}");
        }
        assert!(decode_meta(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_meta(&encode_meta(&meta, "../x")).is_err());
    }

    #[test]
    fn commit_keeps_only_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        assert!(snaps.current().unwrap().is_none());
        let mut meta = SnapshotMeta::<u64, Member> {
            snapshot_id: "a".into(),
            ..Default::default()
        };
        fs::write(snaps.path("a.snap"), b"one").unwrap();
        snaps.commit(&meta, "a.snap", None).unwrap();
        fs::write(snaps.path("b.snap"), b"two").unwrap();
        fs::write(snaps.path(RECEIVING_FILE), b"x").unwrap();
        fs::write(snaps.path("c.snap.tmp"), b"x").unwrap();
        // The server's own files are left alone.
        fs::write(snaps.path("db"), b"store").unwrap();
        meta.snapshot_id = "b".into();
        snaps.commit(&meta, "b.snap", None).unwrap();
        let (m, path) = snaps.current().unwrap().unwrap();
        assert_eq!(m.snapshot_id, "b");
        assert_eq!(fs::read(path).unwrap(), b"two");
        let mut names: Vec<String> = fs::read_dir(dir.path().join(SNAP_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["b.snap", "db", "snapshot.meta"]);
    }
}
