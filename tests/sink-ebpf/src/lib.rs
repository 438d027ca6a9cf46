//! What the reply sink and the load generator agree on: the globals
//! userspace sets at load time and the counters the program keeps.
#![no_std]

/// Global: the server's UDP port, host order; replies come from it.
pub const GLOBAL_SERVER_PORT: &str = "SERVER_PORT";
/// Global: the first of the generator's source ports, host order.
pub const GLOBAL_PORT_BASE: &str = "PORT_BASE";
/// Global: how many source ports the generator uses from the base on.
pub const GLOBAL_PORT_COUNT: &str = "PORT_COUNT";

/// The per-CPU counter array's name.
pub const TALLY_MAP: &str = "TALLY";
/// The program's name.
pub const PROGRAM: &str = "reply_sink";

/// The counters, an index each in [`TALLY_MAP`]. A reply counts in
/// `Replies`, in exactly one of the response-code slots, and in
/// `Truncated` when TC is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Tally {
    Replies = 0,
    Truncated = 1,
    NoError = 2,
    NxDomain = 3,
    /// Any other response code (SERVFAIL, REFUSED, FORMERR...).
    OtherRcode = 4,
}

pub const TALLY_COUNT: u32 = 5;

impl Tally {
    /// The slot of response code `rcode` (the low four bits of the
    /// header's fourth byte).
    pub const fn of_rcode(rcode: u8) -> Tally {
        match rcode {
            0 => Tally::NoError,
            3 => Tally::NxDomain,
            _ => Tally::OtherRcode,
        }
    }
}
