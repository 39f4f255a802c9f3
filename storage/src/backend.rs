//! The I/O seam: every byte the page file and the WAL read or write goes through
//! [`StorageBackend`]. Three implementations live here:
//!
//! * [`FileBackend`]: a real file, positional reads and writes, `fdatasync`.
//! * [`MemoryBackend`]: a growable byte vector, for tests and fuzzing.
//! * [`FaultBackend`]: remembers which writes have not been synced yet, so a test can
//!   "crash" it ([`FaultBackend::crash_image`]): unsynced writes are dropped, kept, or torn
//!   at a random byte. It can also fail every operation after a countdown.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Positional I/O on one file-like object.
///
/// Reads past the end fail with [`io::ErrorKind::UnexpectedEof`]; writes past the end
/// extend the object (the gap reads as zeros).
pub trait StorageBackend: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the length is zero.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` if the object is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every completed write durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len` bytes. Durable after the next sync.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The raw file descriptor, when the backend is a real file (used by io_uring).
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// A real file.
///
/// Its length is read once, when it is opened, and then kept up to date by
/// [`StorageBackend::write_at`] and [`StorageBackend::set_len`]: the file belongs to this
/// process, and `len` is asked often (the quota check of every write), where a `statx`
/// each time would be one system call per request. Writes made through
/// [`StorageBackend::raw_fd`] (the WAL's io_uring path) stay within the length the file
/// already has: WAL segments are preallocated, and a record that does not fit starts the
/// next segment.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    len: AtomicU64,
}

impl FileBackend {
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            len: AtomicU64::new(len),
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// After a failed write or resize, takes the length the file has now. The caller
    /// returns the original error either way; should even the `statx` fail, the length
    /// stays as it was.
    fn reread_len(&self) {
        if let Ok(m) = self.file.metadata() {
            self.len.store(m.len(), Ordering::Release);
        }
    }
}

impl StorageBackend for FileBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len.load(Ordering::Acquire))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(too_large)?;
        // A failed write may still have extended the file part of the way.
        self.file
            .write_all_at(data, offset)
            .inspect_err(|_| self.reread_len())?;
        self.len.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len).inspect_err(|_| self.reread_len())?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.file.as_raw_fd())
    }
}

/// An in-memory object. Syncs are no-ops.
#[derive(Debug, Default, Clone)]
pub struct MemoryBackend {
    data: Arc<Mutex<Vec<u8>>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self {
            data: Arc::new(Mutex::new(bytes)),
        }
    }

    /// A copy of the current contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.data.lock().clone()
    }
}

fn read_from(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| eof())?;
    let end = start.checked_add(buf.len()).ok_or_else(eof)?;
    let src = data.get(start..end).ok_or_else(eof)?;
    buf.copy_from_slice(src);
    Ok(())
}

fn write_into(data: &mut Vec<u8>, offset: u64, src: &[u8]) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| too_large())?;
    let end = start.checked_add(src.len()).ok_or_else(too_large)?;
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(src);
    Ok(())
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of backend")
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "offset too large for an in-memory backend",
    )
}

impl StorageBackend for MemoryBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock().len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_from(&self.data.lock(), offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_into(&mut self.data.lock(), offset, data)
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| too_large())?;
        self.data.lock().resize(len, 0);
        Ok(())
    }
}

/// A small deterministic PRNG (xorshift64*), so fault schedules are reproducible from a
/// seed without pulling a random-number crate into the storage engine.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        // Mix the seed so that small seeds (0, 1, 2, ...) give unrelated streams.
        let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        s = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        s = (s ^ (s >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((s ^ (s >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct FaultState {
    /// Contents as of the last successful sync.
    durable: Vec<u8>,
    /// Contents as seen by readers now (durable + pending).
    current: Vec<u8>,
    /// Operations since the last sync, in order.
    pending: Vec<PendingOp>,
    /// Operations (writes, syncs, set_len) left before every call fails; `None`: never.
    countdown: Option<u64>,
    /// Set once the countdown has run out.
    failed: bool,
}

/// How [`FaultBackend::crash_image`] treats writes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    DropAll,
    /// Each unsynced write independently survives or not, and one of them may be torn
    /// (only a prefix of it reaches the disk).
    Random,
}

/// A backend that models a disk with a volatile write cache.
///
/// Writes become visible to reads at once but durable only at [`StorageBackend::sync_data`].
/// [`FaultBackend::crash_image`] returns what a disk could hold after a power cut at this
/// moment. [`FaultBackend::fail_after`] makes every operation fail after a countdown, as a
/// dying disk would.
#[derive(Debug, Clone, Default)]
pub struct FaultBackend {
    state: Arc<Mutex<FaultState>>,
}

impl FaultBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend whose durable and current contents are `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let state = FaultState {
            durable: bytes.clone(),
            current: bytes,
            ..FaultState::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// After `ops` more writes, syncs or truncations, every call fails with an I/O error.
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

    /// The contents readers see now.
    pub fn current_bytes(&self) -> Vec<u8> {
        self.state.lock().current.clone()
    }

    /// The contents as of the last sync.
    pub fn durable_bytes(&self) -> Vec<u8> {
        self.state.lock().durable.clone()
    }

    /// Number of operations since the last sync.
    pub fn unsynced_ops(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// What the disk could hold after a power cut now: the durable contents plus, under
    /// [`CrashMode::Random`], a random subset of the unsynced operations applied in order,
    /// one write of which may be torn at a random byte.
    pub fn crash_image(&self, mode: CrashMode, rng: &mut TestRng) -> Vec<u8> {
        let s = self.state.lock();
        let mut image = s.durable.clone();
        if mode == CrashMode::DropAll || s.pending.is_empty() {
            return image;
        }
        let torn = rng.below(s.pending.len() as u64 * 2) as usize; // half the time: none
        for (i, op) in s.pending.iter().enumerate() {
            match op {
                PendingOp::Write { offset, data } => {
                    if i == torn {
                        let keep = rng.below(data.len() as u64 + 1) as usize;
                        let _ = write_into(&mut image, *offset, &data[..keep]);
                    } else if rng.chance(1, 2) {
                        let _ = write_into(&mut image, *offset, data);
                    }
                }
                PendingOp::SetLen(len) => {
                    if rng.chance(1, 2) {
                        if let Ok(len) = usize::try_from(*len) {
                            image.resize(len, 0);
                        }
                    }
                }
            }
        }
        image
    }

    fn tick(s: &mut FaultState) -> io::Result<()> {
        if s.failed {
            return Err(io::Error::other("injected I/O failure"));
        }
        if let Some(n) = s.countdown.as_mut() {
            if *n == 0 {
                s.failed = true;
                return Err(io::Error::other("injected I/O failure"));
            }
            *n -= 1;
        }
        Ok(())
    }
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().current.len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = self.state.lock();
        if s.failed {
            return Err(io::Error::other("injected I/O failure"));
        }
        read_from(&s.current, offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        Self::tick(&mut s)?;
        write_into(&mut s.current, offset, data)?;
        s.pending.push(PendingOp::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        Self::tick(&mut s)?;
        s.durable = s.current.clone();
        s.pending.clear();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        Self::tick(&mut s)?;
        let n = usize::try_from(len).map_err(|_| too_large())?;
        s.current.resize(n, 0);
        s.pending.push(PendingOp::SetLen(len));
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_reads_what_was_written_and_rejects_reads_past_end() {
        let b = MemoryBackend::new();
        b.write_at(10, b"abc").unwrap();
        assert_eq!(b.len().unwrap(), 13);
        let mut buf = [0u8; 4];
        b.read_at(9, &mut buf).unwrap();
        assert_eq!(&buf, b"\0abc");
        assert_eq!(
            b.read_at(11, &mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn fault_backend_drops_unsynced_writes_on_crash() {
        let b = FaultBackend::new();
        b.write_at(0, b"durable").unwrap();
        b.sync_data().unwrap();
        b.write_at(0, b"lost!!!").unwrap();
        let mut rng = TestRng::new(1);
        assert_eq!(b.crash_image(CrashMode::DropAll, &mut rng), b"durable");
        assert_eq!(b.current_bytes(), b"lost!!!");
    }

    #[test]
    fn fault_backend_random_crash_keeps_durable_prefix_and_only_written_bytes() {
        for seed in 0..200 {
            let b = FaultBackend::new();
            b.write_at(0, &[1u8; 64]).unwrap();
            b.sync_data().unwrap();
            b.write_at(8, &[2u8; 16]).unwrap();
            b.write_at(40, &[3u8; 8]).unwrap();
            let img = b.crash_image(CrashMode::Random, &mut TestRng::new(seed));
            assert_eq!(img.len(), 64);
            for (i, &x) in img.iter().enumerate() {
                let allowed: &[u8] = match i {
                    8..=23 => &[1, 2],
                    40..=47 => &[1, 3],
                    _ => &[1],
                };
                assert!(allowed.contains(&x), "seed {seed}: byte {i} = {x}");
            }
        }
    }

    #[test]
    fn fault_backend_fails_after_countdown_until_healed() {
        let b = FaultBackend::new();
        b.fail_after(2);
        b.write_at(0, b"a").unwrap();
        b.sync_data().unwrap();
        assert!(b.write_at(0, b"b").is_err());
        assert!(b.sync_data().is_err());
        b.heal();
        b.write_at(0, b"c").unwrap();
    }

    #[test]
    fn file_backend_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let b = FileBackend::new(f).unwrap();
        b.write_at(4096, b"xyz").unwrap();
        assert_eq!(b.len().unwrap(), 4099);
        b.sync_data().unwrap();
        let mut buf = [9u8; 3];
        b.read_at(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"xyz");
        b.write_at(100, b"ab").unwrap();
        assert_eq!(
            b.len().unwrap(),
            4099,
            "a write inside the file keeps its length"
        );
        b.set_len(10).unwrap();
        assert_eq!(b.len().unwrap(), 10);
        assert_eq!(b.file().metadata().unwrap().len(), 10);
        assert!(b.raw_fd().is_some());
        // Opened again, the length comes from the file.
        let again = FileBackend::new(b.file().try_clone().unwrap()).unwrap();
        assert_eq!(again.len().unwrap(), 10);
    }
}
