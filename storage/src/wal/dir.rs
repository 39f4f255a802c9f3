//! The directory a WAL lives in: segment files are opened, created, renamed and removed
//! only through [`WalDir`], so tests can swap in [`FaultDir`] and crash it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::{CrashMode, FaultBackend, FileBackend, StorageBackend, TestRng};

/// File operations on one directory. Names are plain file names (no separators).
pub trait WalDir: Send + Sync + fmt::Debug {
    /// Names of the files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageBackend>>;
    /// Creates an empty file, replacing any file of that name.
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageBackend>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals so far durable.
    fn sync_dir(&self) -> io::Result<()>;
}

/// A real directory; files are [`FileBackend`]s.
#[derive(Debug)]
pub struct FsDir {
    path: PathBuf,
}

impl FsDir {
    /// Opens `path`, creating it (and its parents) if missing.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl WalDir for FsDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in fs::read_dir(&self.path)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageBackend>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(FileBackend::new(f)?))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageBackend>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(FileBackend::new(f)?))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path.join(from), self.path.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.path)?.sync_all()
    }
}

#[derive(Debug, Clone)]
enum DirOp {
    Create(String, FaultBackend),
    Rename(String, String),
    Remove(String),
}

#[derive(Debug, Default)]
struct FaultDirState {
    /// The namespace readers see now.
    files: BTreeMap<String, FaultBackend>,
    /// The namespace as of the last `sync_dir`.
    durable: BTreeMap<String, FaultBackend>,
    /// Namespace operations since the last `sync_dir`, in order.
    pending: Vec<DirOp>,
    /// Mutating operations (file writes/syncs/set_len, dir ops) left before all fail.
    countdown: Option<u64>,
    failed: bool,
    /// Number of file syncs that succeeded.
    file_syncs: u64,
}

impl FaultDirState {
    fn tick(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(injected());
        }
        if let Some(n) = self.countdown.as_mut() {
            if *n == 0 {
                self.failed = true;
                return Err(injected());
            }
            *n -= 1;
        }
        Ok(())
    }
}

fn injected() -> io::Error {
    io::Error::other("injected I/O failure")
}

fn apply(map: &mut BTreeMap<String, FaultBackend>, op: &DirOp) {
    match op {
        DirOp::Create(n, b) => {
            map.insert(n.clone(), b.clone());
        }
        DirOp::Rename(from, to) => {
            if let Some(b) = map.remove(from) {
                map.insert(to.clone(), b);
            }
        }
        DirOp::Remove(n) => {
            map.remove(n);
        }
    }
}

/// An in-memory directory of [`FaultBackend`] files that can be "crashed".
///
/// One countdown ([`FaultDir::fail_after`]) covers every mutating operation on every file
/// and on the directory itself, so a test can stop the world at any I/O step.
/// [`FaultDir::crash_image`] models a power cut: namespace changes since the last
/// `sync_dir` survive as an in-order prefix (a created file may vanish, a removed one
/// reappear), and each file keeps its synced bytes plus, under [`CrashMode::Random`],
/// any subset of its unsynced writes, one possibly torn.
#[derive(Debug, Clone, Default)]
pub struct FaultDir {
    state: Arc<Mutex<FaultDirState>>,
}

impl FaultDir {
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory holding `files`, all durable.
    pub fn from_files(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let map: BTreeMap<_, _> = files
            .into_iter()
            .map(|(n, b)| (n, FaultBackend::from_bytes(b)))
            .collect();
        let state = FaultDirState {
            files: map.clone(),
            durable: map,
            ..Default::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// After `ops` more mutating operations, every operation fails with an I/O error.
    pub fn fail_after(&self, ops: u64) {
        let mut s = self.state.lock();
        s.countdown = Some(ops);
        s.failed = false;
    }

    /// Stops failing and clears any countdown.
    pub fn heal(&self) {
        let mut s = self.state.lock();
        s.countdown = None;
        s.failed = false;
    }

    /// Number of successful file syncs so far.
    pub fn file_syncs(&self) -> u64 {
        self.state.lock().file_syncs
    }

    /// The current contents of every file.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.state
            .lock()
            .files
            .iter()
            .map(|(n, b)| (n.clone(), b.current_bytes()))
            .collect()
    }

    /// What the directory could hold after a power cut now, as a new, healed directory.
    pub fn crash_image(&self, mode: CrashMode, rng: &mut TestRng) -> FaultDir {
        let s = self.state.lock();
        let mut names = s.durable.clone();
        if mode == CrashMode::Random && !s.pending.is_empty() {
            let keep = rng.below(s.pending.len() as u64 + 1) as usize;
            for op in &s.pending[..keep] {
                apply(&mut names, op);
            }
        }
        let files: Vec<_> = names
            .into_iter()
            .map(|(n, b)| (n, b.crash_image(mode, rng)))
            .collect();
        FaultDir::from_files(files)
    }

    fn file(&self, name: &str) -> io::Result<FaultBackend> {
        self.state
            .lock()
            .files
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl WalDir for FaultDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        if s.failed {
            return Err(injected());
        }
        Ok(s.files.keys().cloned().collect())
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageBackend>> {
        let inner = self.file(name)?;
        Ok(Arc::new(FaultFile {
            inner,
            dir: self.state.clone(),
        }))
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageBackend>> {
        let mut s = self.state.lock();
        s.tick()?;
        let inner = FaultBackend::new();
        let op = DirOp::Create(name.to_owned(), inner.clone());
        apply(&mut s.files, &op);
        s.pending.push(op);
        Ok(Arc::new(FaultFile {
            inner,
            dir: self.state.clone(),
        }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick()?;
        if !s.files.contains_key(from) {
            return Err(not_found(from));
        }
        let op = DirOp::Rename(from.to_owned(), to.to_owned());
        apply(&mut s.files, &op);
        s.pending.push(op);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick()?;
        if !s.files.contains_key(name) {
            return Err(not_found(name));
        }
        let op = DirOp::Remove(name.to_owned());
        apply(&mut s.files, &op);
        s.pending.push(op);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick()?;
        s.durable = s.files.clone();
        s.pending.clear();
        Ok(())
    }
}

/// A file of a [`FaultDir`]: a [`FaultBackend`] that also obeys the directory's countdown.
#[derive(Debug)]
struct FaultFile {
    inner: FaultBackend,
    dir: Arc<Mutex<FaultDirState>>,
}

impl StorageBackend for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.dir.lock().failed {
            return Err(injected());
        }
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.dir.lock().tick()?;
        self.inner.write_at(offset, data)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut d = self.dir.lock();
        d.tick()?;
        self.inner.sync_data()?;
        d.file_syncs += 1;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.dir.lock().tick()?;
        self.inner.set_len(len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_create_vanishes_and_unsynced_remove_reverts() {
        let d = FaultDir::new();
        let a = d.create("a").unwrap();
        a.write_at(0, b"aaaa").unwrap();
        a.sync_data().unwrap();
        d.sync_dir().unwrap();
        d.create("b").unwrap();
        d.remove("a").unwrap();
        let img = d.crash_image(CrashMode::DropAll, &mut TestRng::new(1));
        assert_eq!(
            img.files().into_iter().collect::<Vec<_>>(),
            vec![("a".into(), b"aaaa".to_vec())]
        );
        d.sync_dir().unwrap();
        let img = d.crash_image(CrashMode::DropAll, &mut TestRng::new(1));
        assert_eq!(img.list().unwrap(), vec!["b".to_string()]);
    }

    #[test]
    fn countdown_covers_files_and_directory() {
        let d = FaultDir::new();
        d.fail_after(2);
        let f = d.create("x").unwrap();
        f.write_at(0, b"1").unwrap();
        assert!(f.sync_data().is_err());
        assert!(d.sync_dir().is_err());
        d.heal();
        f.sync_data().unwrap();
        assert_eq!(d.file_syncs(), 1);
    }

    #[test]
    fn fs_dir_creates_renames_and_removes() {
        let t = tempfile::tempdir().unwrap();
        let d = FsDir::open(t.path().join("wal")).unwrap();
        let f = d.create("a.tmp").unwrap();
        f.write_at(0, b"x").unwrap();
        d.rename("a.tmp", "a").unwrap();
        d.sync_dir().unwrap();
        assert_eq!(d.list().unwrap(), vec!["a".to_string()]);
        assert!(d.open("a").unwrap().raw_fd().is_some());
        d.remove("a").unwrap();
        assert!(d.list().unwrap().is_empty());
    }
}
