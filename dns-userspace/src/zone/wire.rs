//! Names as lookups see them: uncompressed wire form, ASCII-lowercased.
//!
//! Every suffix of a wire name that starts at a label is itself a wire
//! name, so walking up to a parent, a zone apex or a zone cut is slicing,
//! with no allocation; and a query name becomes a key by lowercasing the
//! bytes of the question, as the kernel does.

use std::{borrow::Borrow, fmt};

use dns_common::wire::{CLASS_IN, POINTER_TO_QUESTION, TYPE_RRSIG};

use hickory_proto::{
    rr::Name,
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable},
};

/// An owned lowercase wire name, the key of zones and nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WireName(Box<[u8]>);

impl WireName {
    /// From a parsed name; `None` only for names that do not encode.
    pub fn from_name(name: &Name) -> Option<WireName> {
        let wire = name.to_lowercase().to_bytes().ok()?;
        Some(WireName(wire.into_boxed_slice()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Back to a presentation name, for building records and messages.
    pub fn to_name(&self) -> Name {
        Name::read(&mut BinDecoder::new(&self.0)).unwrap_or_else(|_| Name::root())
    }
}

impl fmt::Display for WireName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_name().fmt(f)
    }
}

impl Borrow<[u8]> for WireName {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for WireName {
    fn from(wire: &[u8]) -> WireName {
        WireName(wire.into())
    }
}

/// The name one label up, or `None` for the root. `wire` must be a
/// well-formed wire name (as every [`WireName`] and parsed question is).
pub fn parent(wire: &[u8]) -> Option<&[u8]> {
    let label = usize::from(*wire.first()?);
    if label == 0 {
        return None;
    }
    wire.get(1 + label..)
}

/// Whether `name` is `apex` or below it.
pub fn is_within(name: &[u8], apex: &[u8]) -> bool {
    let mut current = Some(name);
    while let Some(candidate) = current {
        if candidate.len() < apex.len() {
            return false;
        }
        if candidate == apex {
            return true;
        }
        current = parent(candidate);
    }
    false
}

/// Copies the uncompressed question name at the start of `message` into
/// `out`, lowercased; returns its length. `None` for compression pointers,
/// long labels or names, or a name running past the message.
pub fn read_lowercase(message: &[u8], out: &mut [u8; 255]) -> Option<usize> {
    let mut at = 0;
    loop {
        let label = usize::from(*message.get(at)?);
        if label > 63 || at + label + 1 > out.len() {
            return None;
        }
        let bytes = message.get(at..=at + label)?;
        for (slot, byte) in out[at..=at + label].iter_mut().zip(bytes) {
            *slot = byte.to_ascii_lowercase();
        }
        at += label + 1;
        if label == 0 {
            return Some(at);
        }
    }
}

/// An RRSIG record owned by the question name: a pointer to it, TYPE
/// and CLASS; TTL and RDLENGTH follow.
const RRSIG_HEAD: [u8; 6] = {
    let [t0, t1] = TYPE_RRSIG.to_be_bytes();
    let [c0, c1] = CLASS_IN.to_be_bytes();
    [
        POINTER_TO_QUESTION[0],
        POINTER_TO_QUESTION[1],
        t0,
        t1,
        c0,
        c1,
    ]
};

/// Appends an RRSIG record owned by the question name, with `ttl` and
/// the RRSIG data `rdata` (its signer's name uncompressed, RFC 4034
/// §3.1.7), as answers to signed queries carry it. `None` for data too
/// long for a record.
pub fn append_rrsig_record(out: &mut Vec<u8>, ttl: u32, rdata: &[u8]) -> Option<()> {
    let len = u16::try_from(rdata.len()).ok()?;
    out.extend_from_slice(&RRSIG_HEAD);
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(rdata);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_up_and_compares_by_label() {
        let name = WireName::from_name(&Name::from_ascii("WWW.Example.com.").unwrap()).unwrap();
        assert_eq!(name.as_bytes(), b"\x03www\x07example\x03com\x00");
        assert_eq!(
            parent(name.as_bytes()),
            Some(&b"\x07example\x03com\x00"[..])
        );
        assert!(is_within(name.as_bytes(), b"\x03com\x00"));
        assert!(!is_within(b"\x03com\x00", name.as_bytes()));
        assert!(
            !is_within(b"\x04xcom\x00", b"\x03com\x00"),
            "not a label boundary"
        );
        assert_eq!(name.to_name().to_string(), "www.example.com.");
    }

    #[test]
    fn reads_question_names() {
        let mut out = [0u8; 255];
        assert_eq!(read_lowercase(b"\x01A\x02Bc\x00rest", &mut out), Some(6));
        assert_eq!(&out[..6], b"\x01a\x02bc\x00");
        assert_eq!(read_lowercase(b"\xc0\x0c", &mut out), None, "pointer");
        assert_eq!(read_lowercase(b"\x05ab", &mut out), None, "truncated");
    }
}
