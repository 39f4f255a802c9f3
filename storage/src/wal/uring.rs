//! io_uring submission of "write a batch, then fdatasync" as two linked requests.
//!
//! The only `unsafe` of the WAL lives here: pushing a submission-queue entry promises the
//! kernel that the buffer and file stay valid until the request completes. [`Uring`] keeps
//! that promise by owning every in-flight buffer and file handle until both completions
//! of its pair have been reaped, and by draining all requests before it is dropped.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use crate::backend::StorageBackend;

/// user_data = tag * 2 + OP_*.
const OP_WRITE: u64 = 0;
const OP_FSYNC: u64 = 1;
const PROBE_TAG: u64 = u64::MAX;

#[derive(Debug)]
struct InFlight {
    buf: Vec<u8>,
    file: Arc<dyn StorageBackend>,
    offset: u64,
    write_res: Option<i32>,
    fsync_res: Option<i32>,
}

/// A write+fdatasync pair whose two completions have both arrived.
#[derive(Debug)]
pub struct Completed {
    pub tag: u64,
    pub buf: Vec<u8>,
    pub file: Arc<dyn StorageBackend>,
    pub offset: u64,
    /// Bytes written, or -errno.
    pub write_res: i32,
    /// 0, or -errno (`-ECANCELED` if the write was short or failed).
    pub fsync_res: i32,
}

pub struct Uring {
    ring: IoUring,
    inflight: HashMap<u64, InFlight>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("inflight", &self.inflight.len())
            .finish()
    }
}

impl Uring {
    /// Sets up a ring and proves it works with a NOP round trip (seccomp filters may
    /// allow `io_uring_setup` but refuse `io_uring_enter`).
    pub fn new() -> io::Result<Self> {
        let mut ring = IoUring::new(8)?;
        let nop = opcode::Nop::new().build().user_data(PROBE_TAG);
        // SAFETY: a NOP references no memory.
        unsafe { ring.submission().push(&nop) }.map_err(|_| io::Error::other("SQ full"))?;
        submit_and_wait(&ring, 1)?;
        let cqe = ring
            .completion()
            .next()
            .ok_or_else(|| io::Error::other("no NOP completion"))?;
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        Ok(Self {
            ring,
            inflight: HashMap::new(),
        })
    }

    /// Queues `buf` to be written at `offset` of `file` (whose descriptor is `fd`),
    /// linked to an fdatasync that runs only if the write fully succeeds.
    pub fn submit_write_sync(
        &mut self,
        tag: u64,
        file: Arc<dyn StorageBackend>,
        fd: RawFd,
        offset: u64,
        buf: Vec<u8>,
    ) -> io::Result<()> {
        debug_assert!(!self.inflight.contains_key(&tag));
        let len = u32::try_from(buf.len()).map_err(|_| io::Error::other("batch too large"))?;
        let write = opcode::Write::new(types::Fd(fd), buf.as_ptr(), len)
            .offset(offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(tag * 2 + OP_WRITE);
        let fsync = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(tag * 2 + OP_FSYNC);
        {
            let mut sq = self.ring.submission();
            if sq.capacity() - sq.len() < 2 {
                return Err(io::Error::other("io_uring submission queue full"));
            }
            // SAFETY: `buf`'s heap allocation and `file` (which keeps `fd` open) are moved
            // into `self.inflight` below and stay there until both completions are reaped
            // in `wait`; `Drop` reaps everything before freeing them. Moving the Vec does
            // not move its heap buffer.
            unsafe {
                sq.push(&write).map_err(|_| io::Error::other("SQ full"))?;
                sq.push(&fsync).map_err(|_| io::Error::other("SQ full"))?;
            }
        }
        self.inflight.insert(
            tag,
            InFlight {
                buf,
                file,
                offset,
                write_res: None,
                fsync_res: None,
            },
        );
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The entries stay queued; the caller fails the WAL, and Drop drains.
                Err(e) => return Err(e),
            }
        }
    }

    /// Blocks until at least one completion arrives; returns the pairs now complete.
    pub fn wait(&mut self) -> io::Result<Vec<Completed>> {
        submit_and_wait(&self.ring, 1)?;
        let mut done = Vec::new();
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in cqes {
            let tag = ud / 2;
            let Some(f) = self.inflight.get_mut(&tag) else {
                continue;
            };
            if ud % 2 == OP_WRITE {
                f.write_res = Some(res);
            } else {
                f.fsync_res = Some(res);
            }
            if let (Some(write_res), Some(fsync_res)) = (f.write_res, f.fsync_res) {
                if let Some(f) = self.inflight.remove(&tag) {
                    done.push(Completed {
                        tag,
                        buf: f.buf,
                        file: f.file,
                        offset: f.offset,
                        write_res,
                        fsync_res,
                    });
                }
            }
        }
        Ok(done)
    }
}

fn submit_and_wait(ring: &IoUring, want: usize) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(want) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // The kernel may still read from in-flight buffers: wait for every completion.
        while !self.inflight.is_empty() {
            if self.wait().is_err() {
                // The ring is unusable; leak the buffers rather than free memory the
                // kernel might still read.
                std::mem::forget(std::mem::take(&mut self.inflight));
                return;
            }
        }
    }
}
