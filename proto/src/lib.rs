//! etcd v3 compatible gRPC API for mnemo.
//!
//! The `.proto` files in `proto/proto/` follow etcd's published API
//! (packages `etcdserverpb`, `mvccpb`, `authpb`, `v3lockpb`, `v3electionpb`)
//! field for field, so that etcd clients talk to mnemo unchanged. `build.rs`
//! turns them into prost messages plus tonic clients and servers; this crate
//! only re-exports the generated modules under stable paths:
//!
//! - [`etcdserverpb`]: KV, Watch, Lease, Cluster, Maintenance and Auth services
//! - [`mvccpb`]: `KeyValue` and `Event`
//! - [`authpb`]: `User`, `Permission`, `Role`
//! - [`v3lockpb`]: the Lock service
//! - [`v3electionpb`]: the Election service
//!
//! Every message and enum of these five packages also implements serde's `Serialize`
//! and `Deserialize` with etcd's JSON gateway mapping (grpc-gateway's JSONPb with
//! `OrigName`): proto field names (`create_revision`, `dbSize`) in output, proto or
//! lowerCamelCase names accepted on input, 64-bit integers as strings, bytes as
//! base64, enums by name, default values omitted, unknown fields ignored.
//! `mnemopeerpb` has none.
//!
//! Generated code is exempt from the workspace lints.

/// Generated from `mvccpb/kv.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Generated from `authpb/auth.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// Generated from `etcdserverpb/rpc.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// Generated from `mnemopeerpb/peer.proto`: mnemo's own peer protocol (not etcd's).
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
pub mod mnemopeerpb {
    include!(concat!(env!("OUT_DIR"), "/mnemopeerpb.rs"));
}

/// Generated from `v3lockpb/v3lock.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// Generated from `v3electionpb/v3election.proto`.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
