//! The DNS query: is it a plain question for A/IN we may answer in the
//! kernel? On the way, the query name is lowercased into the lookup key.

use dns_common::{CLASSIC_UDP_PAYLOAD, Counter, MAX_NAME_LEN};

use crate::scratch::Scratch;

pub const HEADER_LEN: usize = 12;
const QTYPE_A: u16 = 1;
const QCLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;
/// An OPT record without options: root name, type, class, TTL, RDLENGTH.
pub const OPT_LEN: usize = 11;

/// What the answer needs to know about the question.
pub struct Question {
    /// Bytes from the start of the message to the end of the question.
    pub end: usize,
    /// The query name's length on the wire.
    pub name_len: usize,
    /// Whether the query carried an OPT record (which the answer echoes).
    pub edns: bool,
    /// Largest UDP payload the client accepts.
    pub payload_limit: usize,
    /// The query's flag bytes (header bytes 2 and 3).
    pub flags: [u8; 2],
}

/// Checks the `len` bytes of message in `scratch` and builds `scratch.key`.
#[inline(always)]
pub fn parse(scratch: &mut Scratch, len: usize, server_payload: u16) -> Result<Question, Counter> {
    if len < HEADER_LEN {
        return Err(Counter::PassMalformed);
    }
    let flags = [scratch.msg(2), scratch.msg(3)];
    // QR=0, OPCODE=QUERY, TC=0; Z=0 and RCODE=0. AA, RD, AD and CD may be
    // anything: we echo RD and CD, and AA and AD mean nothing in a query.
    if flags[0] & 0xfa != 0 || flags[1] & 0x4f != 0 {
        return Err(Counter::PassUnsupported);
    }
    let additional = scratch.msg_u16(10);
    if scratch.msg_u16(4) != 1
        || scratch.msg_u16(6) != 0
        || scratch.msg_u16(8) != 0
        || additional > 1
    {
        return Err(Counter::PassUnsupported);
    }

    let name_len = read_name(scratch, len)?;
    let qtype_at = HEADER_LEN + name_len;
    let end = qtype_at + 4;
    if end > len {
        return Err(Counter::PassMalformed);
    }
    if scratch.msg_u16(qtype_at) != QTYPE_A || scratch.msg_u16(qtype_at + 2) != QCLASS_IN {
        return Err(Counter::PassNotAIn);
    }

    let mut question = Question {
        end,
        name_len,
        edns: additional == 1,
        payload_limit: CLASSIC_UDP_PAYLOAD as usize,
        flags,
    };
    let mut message_end = end;
    if question.edns {
        if end + OPT_LEN > len {
            return Err(Counter::PassMalformed);
        }
        if scratch.msg(end) != 0 || scratch.msg_u16(end + 1) != TYPE_OPT {
            // TSIG or another record: userspace's business.
            return Err(Counter::PassUnsupported);
        }
        let client_payload = scratch.msg_u16(end + 3);
        let extended_rcode = scratch.msg(end + 5);
        let version = scratch.msg(end + 6);
        let do_bit = scratch.msg(end + 7) & 0x80;
        let options_len = scratch.msg_u16(end + 9);
        if extended_rcode != 0 || version != 0 || do_bit != 0 || options_len != 0 {
            return Err(Counter::PassEdns);
        }
        // Honour the smaller of the two sizes, and never less than 512
        // (RFC 6891 §6.2.5).
        let limit = if client_payload < server_payload {
            client_payload
        } else {
            server_payload
        };
        if limit > CLASSIC_UDP_PAYLOAD {
            question.payload_limit = limit as usize;
        }
        message_end += OPT_LEN;
    }
    if message_end != len {
        return Err(Counter::PassMalformed);
    }
    Ok(question)
}

/// Walks the query name's labels to find its length, then has it copied,
/// lowercased, into the key. Compression pointers, labels over 63 bytes and
/// names over 255 bytes are malformed in a question.
#[inline(always)]
fn read_name(scratch: &mut Scratch, len: usize) -> Result<usize, Counter> {
    // Labels are at least two bytes, so a 255-byte name has at most 127
    // of them before the root.
    let mut at = 0;
    for _ in 0..MAX_NAME_LEN / 2 + 1 {
        if HEADER_LEN + at >= len {
            return Err(Counter::PassMalformed);
        }
        let label = scratch.msg(HEADER_LEN + at) as usize;
        if label == 0 {
            let name_len = at + 1;
            scratch.set_key(name_len);
            return Ok(name_len);
        }
        if label > 63 {
            return Err(Counter::PassMalformed);
        }
        at += label + 1;
        if at >= MAX_NAME_LEN {
            return Err(Counter::PassMalformed);
        }
    }
    Err(Counter::PassMalformed)
}
