//! The gRPC contract of pgvault: the generated `pgvault.v1` messages, clients
//! and servers, the file descriptor set for server reflection, and the
//! grammar of resource names (`names`), and the TLS crypto provider every
//! gRPC endpoint installs first (`tls`).
//!
//! Generated types are wire types only. Domain types live in the crates that
//! own them and convert at the edge with `TryFrom`.

pub mod names;
pub mod tls;

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("pgvault.v1");
}

/// Encoded `FileDescriptorSet` of every pgvault `.proto` file.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pgvault_descriptor.bin"));

pub use prost_types::Timestamp;

/// Version of the agent stream protocol (`AgentService.Connect`) this build
/// speaks. Bumped when an older agent or coordinator could not follow the
/// new messages; the coordinator refuses an agent whose version it does not
/// speak, naming both.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;
