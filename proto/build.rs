//! Generates the etcd-compatible message types (prost) and the gRPC client and
//! server code (tonic) from the .proto files under `proto/`.
//!
//! protoc comes from `protoc-bin-vendored`, so a build needs nothing but cargo.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";

const PROTOS: &[&str] = &[
    "proto/mvccpb/kv.proto",
    "proto/authpb/auth.proto",
    "proto/etcdserverpb/rpc.proto",
    "proto/v3lockpb/v3lock.proto",
    "proto/v3electionpb/v3election.proto",
    "proto/mnemopeerpb/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build reads the protoc location from PROTOC; build scripts run
    // single-threaded, so setting it here is sound.
    std::env::set_var("PROTOC", protoc);

    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(PROTOS, &[PROTO_ROOT])?;
    Ok(())
}
