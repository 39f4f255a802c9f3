//! mnemo: a drop-in replacement for etcd v3.
//!
//! * [`config`]: flags with etcd's names, and their validation.
//! * [`mvcc`]: the multi-version key-value store with etcd's semantics, over the page
//!   file, plus the watch hub.
//! * [`raft`]: openraft over the WAL (log) and the MVCC store (state machine).
//! * [`lease`]: the leader's lease clock.
//! * [`server`]: turns client requests into raft proposals and reads.
//! * [`grpc`]: thin tonic services for etcd's API.
//! * [`auth`]: users, roles, permissions and tokens (etcd's auth).
//! * [`error`]: the error type and its one conversion to a gRPC status.
//! * [`tls`]: TLS from etcd's flags (rustls), shared by the client and peer ports.

pub mod auth;
pub mod command;
pub mod config;
pub mod error;
pub mod grpc;
pub mod lease;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod tls;
