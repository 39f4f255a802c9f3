//! mnemo's storage engine.
//!
//! * [`backend`]: the I/O trait every read and write goes through, with file, memory and
//!   fault-injecting implementations.
//! * The page file: a copy-on-write B+tree with named tables, one writer and many
//!   snapshot readers (`Database`).
//! * [`wal`]: a segmented write-ahead log with group commit.
//!
//! Nothing here knows about etcd, gRPC or protobuf.

pub mod backend;
pub mod error;
pub mod wal;

pub use backend::{CrashMode, FaultBackend, FileBackend, MemoryBackend, StorageBackend, TestRng};
pub use error::{Location, Result, StorageError};
pub use wal::{IoPath, Record, Wal, WalOptions};
