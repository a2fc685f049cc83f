//! Compiles `proto/pgvault/v1/*.proto` with protox (pure Rust, no system
//! `protoc`) and generates tonic clients and servers into `OUT_DIR`, together
//! with the encoded file descriptor set used by server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/pgvault/v1/resources.proto",
        "proto/pgvault/v1/jobs.proto",
        "proto/pgvault/v1/dead_letters.proto",
        "proto/pgvault/v1/service.proto",
        "proto/pgvault/v1/worker.proto",
        "proto/pgvault/v1/agent.proto",
        "proto/pgvault/v1/notifications.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("pgvault_descriptor.bin"), fds.encode_to_vec())?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
