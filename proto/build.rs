//! Generates the etcd-compatible message types (prost) and the gRPC client and
//! server code (tonic) from the .proto files under `proto/`.
//!
//! protoc comes from `protoc-bin-vendored`, so a build needs nothing but cargo.
//!
//! The etcd packages also get serde impls (pbjson-build, from the descriptor set protoc
//! writes) for the JSON gateway: etcd's grpc-gateway mapping, with proto field names in
//! output, 64-bit integers as strings, bytes as base64 and enums by name. Unknown
//! fields are ignored on input, as grpc-gateway v1's JSONPb does. Not for
//! `mnemopeerpb`, which never leaves the peer port.

use std::path::PathBuf;

/// The packages the JSON gateway serves.
const JSON_PACKAGES: &[&str] = &[
    ".etcdserverpb",
    ".mvccpb",
    ".authpb",
    ".v3lockpb",
    ".v3electionpb",
];

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

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out_dir.join("descriptors.bin");
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(&descriptors)
        .compile_protos(PROTOS, &[PROTO_ROOT])?;

    let descriptor_set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(JSON_PACKAGES)?;
    Ok(())
}
