//! Tests of the raft layer against an in-memory store ([`mem_store::MemStore`]) that
//! can lose its deferred commits like a crashed page file; tests/raft_*.rs run the same
//! paths against the real MVCC store.

mod log_store;
pub mod mem_store;
mod node;
mod snapshot;
mod suite;
