//! dnslb: a DNS load balancer whose hot path runs in XDP.
//!
//! The kernel program (`dns-ebpf`) answers the hot, simple queries; this
//! crate owns everything else: zones, the authoritative server for what the
//! kernel passes on, the kernel maps, and metrics.

pub mod anycast;
pub mod api;
pub mod backends;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod daemon;
pub mod dataplane;
pub mod durable;
pub mod file_error;
pub mod health;
pub mod hooks;
pub mod http;
pub mod load;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod shared;
pub mod shell;
pub mod signer;
pub mod steering;
pub mod zone;
