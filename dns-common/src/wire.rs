//! DNS wire rules the kernel and the daemon both apply: header layout, flag
//! masks, the OPT record and the options each side understands. Defined
//! once so that what the kernel answers and what the daemon answers cannot
//! drift apart.

/// The fixed DNS header.
pub const HEADER_LEN: usize = 12;

/// UDP payload limit for answers to queries without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// A compression pointer to offset 12: the question name, which every
/// answer record we write is owned by.
pub const POINTER_TO_QUESTION: [u8; 2] = [0xc0, 0x0c];
/// An answer record before its data: owner pointer, TYPE, CLASS, TTL and
/// RDLENGTH.
pub const RECORD_HEADER_LEN: usize = 12;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_RRSIG: u16 = 46;
pub const CLASS_IN: u16 = 1;

/// Bits of header byte 2 a query we answer must have clear: QR, OPCODE
/// (QUERY is 0) and TC. AA and RD may be anything.
pub const QUERY_FLAGS0_CLEAR: u8 = 0xfa;
/// Bits of header byte 3 a query we answer must have clear: RA, Z and
/// RCODE. AD and CD may be anything.
pub const QUERY_FLAGS1_CLEAR: u8 = 0x4f;
/// Header byte 2 of an answer: QR and AA, with the query's RD kept.
pub const ANSWER_FLAGS0: u8 = 0x84;
pub const FLAGS0_RD: u8 = 0x01;
/// The only bit of header byte 3 an answer copies from its query.
pub const FLAGS1_CD: u8 = 0x10;
/// The QR bit of header byte 2: set in answers.
pub const FLAGS0_QR: u8 = 0x80;
/// The TC bit of header byte 2: the answer is truncated, ask over TCP.
pub const FLAGS0_TC: u8 = 0x02;
/// Bits of header byte 2 an error answer copies from its query: OPCODE
/// and RD.
pub const FLAGS0_OPCODE_RD: u8 = 0x79;

pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_NXDOMAIN: u8 = 3;

/// An OPT record without options: root owner, TYPE, CLASS (payload size),
/// TTL (extended RCODE, version, flags), RDLENGTH.
pub const OPT_LEN: usize = 11;
/// Offset, inside an OPT record, of the flags byte holding DO.
pub const OPT_FLAGS_AT: usize = 7;
/// The DO bit in that byte (RFC 3225).
pub const OPT_DO: u8 = 0x80;
/// Option code and length before every option's data.
pub const OPTION_HEADER_LEN: usize = 4;

/// EDNS Client Subnet (RFC 7871).
pub const OPTION_ECS: u16 = 8;
/// DNS Cookie (RFC 7873).
pub const OPTION_COOKIE: u16 = 10;
/// ECS data before the address: family, source and scope prefix lengths.
pub const ECS_FIXED_LEN: usize = 4;
pub const ECS_FAMILY_V4: u16 = 1;
pub const ECS_FAMILY_V6: u16 = 2;

/// A client cookie is exactly 8 bytes (RFC 7873 §4).
pub const CLIENT_COOKIE_LEN: usize = 8;
/// A server cookie, when present, is 8 to 32 bytes.
pub const SERVER_COOKIE_MIN: usize = 8;
pub const SERVER_COOKIE_MAX: usize = 32;
/// The server cookies dnslb makes (RFC 9018): version, reserved,
/// timestamp and an 8-byte hash.
pub const SERVER_COOKIE_LEN: usize = 16;
/// The whole cookie option dnslb answers with.
pub const COOKIE_OPTION_LEN: usize = OPTION_HEADER_LEN + CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN;

/// Options the kernel walks in one OPT record before it gives up and
/// passes the query on.
pub const MAX_OPTIONS: usize = 8;

/// Whether an ECS option's data is well formed (RFC 7871 §6): a known
/// family, a source prefix no longer than its addresses, scope 0 in a
/// query, exactly the address bytes the prefix needs and no bits set past
/// it. `data` is the option's data, after code and length.
pub fn ecs_is_valid(data: &[u8]) -> bool {
    let [f0, f1, source, scope, address @ ..] = data else {
        return false;
    };
    let max = match u16::from_be_bytes([*f0, *f1]) {
        ECS_FAMILY_V4 => 32,
        ECS_FAMILY_V6 => 128,
        _ => return false,
    };
    let source = *source as usize;
    if source > max || *scope != 0 || address.len() != source.div_ceil(8) {
        return false;
    }
    // Bits of the last address byte that lie past the prefix.
    let spare = (8 - source % 8) % 8;
    address
        .last()
        .is_none_or(|last| u16::from(*last) & ((1u16 << spare) - 1) == 0)
}

/// Whether a cookie option of `len` data bytes has a size RFC 7873 allows:
/// a client cookie alone, or with a server cookie of 8 to 32 bytes.
pub const fn cookie_len_is_valid(len: usize) -> bool {
    len == CLIENT_COOKIE_LEN
        || (len >= CLIENT_COOKIE_LEN + SERVER_COOKIE_MIN
            && len <= CLIENT_COOKIE_LEN + SERVER_COOKIE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_validity() {
        assert!(ecs_is_valid(&[0, 1, 24, 0, 198, 18, 1]));
        assert!(ecs_is_valid(&[0, 1, 0, 0]), "source 0, no address");
        assert!(ecs_is_valid(&[
            0, 2, 56, 0, 0x20, 1, 0x0d, 0xb8, 0, 0, 0x12
        ]));
        assert!(ecs_is_valid(&[0, 1, 20, 0, 198, 18, 0xf0]));
        assert!(
            !ecs_is_valid(&[0, 1, 20, 0, 198, 18, 0xf8]),
            "bits past the prefix"
        );
        assert!(!ecs_is_valid(&[0, 1, 24, 0, 198, 18]), "short address");
        assert!(!ecs_is_valid(&[0, 1, 24, 0, 198, 18, 1, 0]), "long address");
        assert!(
            !ecs_is_valid(&[0, 1, 33, 0, 1, 2, 3, 4, 5]),
            "prefix too long"
        );
        assert!(!ecs_is_valid(&[0, 3, 0, 0]), "family");
        assert!(
            !ecs_is_valid(&[0, 1, 24, 8, 198, 18, 1]),
            "scope in a query"
        );
        assert!(!ecs_is_valid(&[0, 1, 24]), "cut");
    }

    #[test]
    fn cookie_sizes() {
        let valid: Vec<usize> = (0..50).filter(|&len| cookie_len_is_valid(len)).collect();
        assert_eq!(valid, [8].into_iter().chain(16..=40).collect::<Vec<_>>());
    }
}
