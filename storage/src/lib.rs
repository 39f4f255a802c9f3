//! mnemo's storage engine.
//!
//! * [`backend`]: the I/O trait every read and write goes through, with file, memory and
//!   fault-injecting implementations.
//! * The page file ([`Database`]): a copy-on-write B+tree with named tables, one writer
//!   and any number of snapshot readers. Layout and commit protocol: docs/format.md.
//! * [`wal`]: a segmented write-ahead log with group commit (io_uring, or pwrite +
//!   fdatasync where io_uring is unavailable). Format and recovery: docs/wal.md.
//!
//! Nothing here knows about etcd, gRPC or protobuf.

pub mod backend;
mod btree;
mod cache;
pub mod check;
mod compact;
mod db;
pub mod error;
pub mod header;
pub mod histogram;
pub mod inspect;
pub mod page;
pub mod wal;
mod write;

pub use backend::{CrashMode, FaultBackend, FileBackend, MemoryBackend, StorageBackend, TestRng};
pub use check::{CheckReport, PageMap, PageUse, Stats, TreeStats};
pub use compact::{CompactCursor, CompactStep};
pub use db::{
    CommitPoint, Database, DatabaseOptions, Durability, Entry, OpenReport, Range, ReadTransaction,
    Table, ValueGuard,
};
pub use error::{Location, Result, StorageError};
pub use wal::{IoPath, Record, Wal, WalOptions};
pub use write::{TableMut, WriteTransaction};
