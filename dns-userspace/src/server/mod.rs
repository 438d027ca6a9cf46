//! The daemon's DNS server: answers everything the kernel passes on.
//!
//! `respond` holds the authoritative logic; `udp` and `tcp` only move bytes.

mod cookies;
mod dnssec;
mod edns;
mod fast;
mod journal;
mod notify;
mod rate_limit;
mod respond;
mod signed_copy;
mod signing_metrics;
mod tcp;
mod transfer;
mod tsig;
mod udp;

pub use cookies::{CookieFileError, CookieKeys, unix_now};
pub use journal::records_but_soa;
pub use notify::{notify_changes, notify_version};
pub use rate_limit::{RateLimiter, ThreadLimiter};
pub use respond::{Responder, Signers, Transport, slip};
pub use signing_metrics::SigningCollector;
pub use tcp::{answer_stream, framed, serve_tcp};
pub use transfer::{TransferRules, ZoneTransfer};
pub use tsig::{TsigKey, TsigKeyError};
pub use udp::serve_udp;
