//! The DNS query: is it a question for A or AAAA in class IN that the
//! kernel may answer, with EDNS it understands? On the way, the query name
//! is lowercased and digested, and the cookie and Client Subnet options
//! are found and checked.

use dns_common::{
    Counter, MAX_NAME_LEN,
    wire::{
        CLASS_IN, CLASSIC_UDP_PAYLOAD, ECS_FAMILY_V4, ECS_FAMILY_V6, ECS_FIXED_LEN, FLAGS0_QR,
        HEADER_LEN, MAX_OPTIONS, OPT_DO, OPT_FLAGS_AT, OPT_LEN, OPTION_COOKIE, OPTION_ECS,
        OPTION_HEADER_LEN, QUERY_FLAGS0_CLEAR, QUERY_FLAGS1_CLEAR, TYPE_A, TYPE_AAAA, TYPE_OPT,
        cookie_len_is_valid,
    },
};

use crate::scratch::Scratch;

/// What the answer needs to know about the question.
#[derive(Clone, Copy)]
pub struct Question {
    /// Bytes from the start of the message to the end of the question.
    pub end: usize,
    /// The query name's length on the wire.
    pub name_len: usize,
    /// The name's digest (`dns_common::HotName::digest`).
    pub digest: u64,
    /// AAAA rather than A.
    pub aaaa: bool,
    /// Whether the query carried an OPT record (which the answer echoes).
    pub edns: bool,
    /// The DO bit, copied into the answer's OPT record.
    pub dnssec_ok: bool,
    /// Largest UDP payload the client accepts.
    pub payload_limit: usize,
    /// The query's flag bytes (header bytes 2 and 3).
    pub flags: [u8; 2],
    /// Where the cookie option's data starts, and its length (0: none).
    pub cookie_at: usize,
    pub cookie_len: usize,
    /// Where the Client Subnet option's data starts (0: none).
    pub ecs_at: usize,
}

/// Checks the `len` bytes of message in `scratch` and reads the name.
#[inline(always)]
pub fn parse(scratch: &mut Scratch, len: usize, server_payload: u16) -> Result<Question, Counter> {
    if len < HEADER_LEN {
        return Err(Counter::PassMalformed);
    }
    let flags = [scratch.msg(2), scratch.msg(3)];
    if flags[0] & FLAGS0_QR != 0 {
        return Err(Counter::DropResponse);
    }
    if flags[0] & QUERY_FLAGS0_CLEAR != 0 || flags[1] & QUERY_FLAGS1_CLEAR != 0 {
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

    let name_len = name_len(scratch, len)?;
    let digest = scratch.read_name(name_len);
    let qtype_at = HEADER_LEN + name_len;
    let end = qtype_at + 4;
    if end > len {
        return Err(Counter::PassMalformed);
    }
    let qtype = scratch.msg_u16(qtype_at);
    if (qtype != TYPE_A && qtype != TYPE_AAAA) || scratch.msg_u16(qtype_at + 2) != CLASS_IN {
        return Err(Counter::PassQtype);
    }

    let mut question = Question {
        end,
        name_len,
        digest,
        aaaa: qtype == TYPE_AAAA,
        edns: additional == 1,
        dnssec_ok: false,
        payload_limit: CLASSIC_UDP_PAYLOAD as usize,
        flags,
        cookie_at: 0,
        cookie_len: 0,
        ecs_at: 0,
    };
    if !question.edns {
        return if end == len {
            Ok(question)
        } else {
            Err(Counter::PassMalformed)
        };
    }
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
    if extended_rcode != 0 || version != 0 {
        return Err(Counter::PassEdns);
    }
    question.dnssec_ok = scratch.msg(end + OPT_FLAGS_AT) & OPT_DO != 0;
    let options_len = scratch.msg_u16(end + 9) as usize;
    let options_end = end + OPT_LEN + options_len;
    if options_end != len {
        return Err(Counter::PassMalformed);
    }
    read_options(scratch, &mut question, end + OPT_LEN, options_end)?;
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
    Ok(question)
}

/// Walks the OPT record's options from `at` to `end`: notes where the
/// cookie and the Client Subnet are, skips the others (padding included,
/// as the daemon ignores them), and passes the query on when an option is
/// cut, malformed or repeated, or there are too many to walk.
#[inline(always)]
fn read_options(
    scratch: &Scratch,
    question: &mut Question,
    mut at: usize,
    end: usize,
) -> Result<(), Counter> {
    for _ in 0..MAX_OPTIONS {
        if at >= end {
            return Ok(());
        }
        let data = at + OPTION_HEADER_LEN;
        let code = scratch.msg_u16(at);
        let len = scratch.msg_u16(at + 2) as usize;
        if data + len > end {
            return Err(Counter::PassEdns);
        }
        if code == OPTION_COOKIE {
            if question.cookie_at != 0 || !cookie_len_is_valid(len) {
                return Err(Counter::PassEdns);
            }
            question.cookie_at = data;
            question.cookie_len = len;
        } else if code == OPTION_ECS {
            if question.ecs_at != 0 || !ecs_is_valid(scratch, data, len) {
                return Err(Counter::PassEdns);
            }
            question.ecs_at = data;
        }
        at = data + len;
    }
    if at == end {
        Ok(())
    } else {
        Err(Counter::PassEdns)
    }
}

/// `dns_common::wire::ecs_is_valid` on the message copy.
#[inline(always)]
fn ecs_is_valid(scratch: &Scratch, data: usize, len: usize) -> bool {
    if len < ECS_FIXED_LEN {
        return false;
    }
    let family = scratch.msg_u16(data);
    let source = scratch.msg(data + 2) as usize;
    let max = if family == ECS_FAMILY_V4 {
        32
    } else if family == ECS_FAMILY_V6 {
        128
    } else {
        return false;
    };
    let address_len = source.div_ceil(8);
    if source > max || scratch.msg(data + 3) != 0 || len != ECS_FIXED_LEN + address_len {
        return false;
    }
    let spare = (8 - source % 8) % 8;
    address_len == 0 || scratch.msg(data + len - 1) & ((1u16 << spare) - 1) as u8 == 0
}

/// Walks the query name's labels to find its length. Compression pointers,
/// labels over 63 bytes and names over 255 bytes are malformed in a
/// question.
#[inline(always)]
fn name_len(scratch: &Scratch, len: usize) -> Result<usize, Counter> {
    // Labels are at least two bytes, so a 255-byte name has at most 127
    // of them before the root.
    let mut at = 0;
    for _ in 0..MAX_NAME_LEN / 2 + 1 {
        if HEADER_LEN + at >= len {
            return Err(Counter::PassMalformed);
        }
        let label = scratch.msg(HEADER_LEN + at) as usize;
        if label == 0 {
            return Ok(at + 1);
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
