//! The daemon's DNS server: answers everything the kernel passes on.
//!
//! `respond` holds the authoritative logic; `udp` and `tcp` only move bytes.

mod cookies;
mod edns;
mod fast;
mod respond;
mod tcp;
mod udp;

pub use cookies::{CookieFileError, CookieKeys};
pub use respond::{Responder, Transport};
pub use tcp::serve_tcp;
pub use udp::serve_udp;
