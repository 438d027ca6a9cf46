//! An RRset as the server keeps it: type, TTL and the record data, plus the
//! records pre-encoded for an answer section. The owner is the node's name
//! and the class is always IN, so neither is stored per record.

use std::{net::IpAddr, sync::OnceLock};

use dns_common::wire::{POINTER_TO_QUESTION, RECORD_HEADER_LEN};
use hickory_proto::{
    rr::{Name, RData, Record, RecordType, rdata::HTTPS},
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};

/// An address as the record data of an A (IPv4) or AAAA (IPv6) record.
pub fn address_rdata(addr: IpAddr) -> RData {
    match addr {
        IpAddr::V4(v4) => RData::A(v4.into()),
        IpAddr::V6(v6) => RData::AAAA(v6.into()),
    }
}

/// The name whose addresses go in the additional section, for the types
/// that have one.
pub fn additional_target(rdata: &RData) -> Option<&Name> {
    match rdata {
        RData::NS(target) => Some(&target.0),
        RData::MX(mx) => Some(&mx.exchange),
        RData::SRV(srv) => Some(&srv.target),
        // RFC 9460 §4.1; "." means the owner itself, whose addresses the
        // client asks for anyway.
        RData::SVCB(svcb) | RData::HTTPS(HTTPS(svcb)) if !svcb.target_name.is_root() => {
            Some(&svcb.target_name)
        }
        _ => None,
    }
}

#[derive(Clone, Debug)]
pub struct Rrset {
    record_type: RecordType,
    ttl: u32,
    rdatas: Vec<RData>,
    /// Each record as it goes in an answer to a question for the owner:
    /// owner as a pointer to the question, then type, class IN, TTL,
    /// RDLENGTH and RDATA (names uncompressed). Built on the first answer,
    /// so loading a zone encodes nothing and answering copies bytes.
    answer_wire: OnceLock<Box<[u8]>>,
}

impl Rrset {
    /// Whether `other` has the same type, TTL and records, in any order.
    pub fn same_records(&self, other: &Rrset) -> bool {
        self.record_type == other.record_type
            && self.ttl == other.ttl
            && self.rdatas.len() == other.rdatas.len()
            && self.rdatas.iter().all(|rdata| other.rdatas.contains(rdata))
    }

    pub fn new(record_type: RecordType, ttl: u32) -> Rrset {
        Rrset {
            record_type,
            ttl,
            rdatas: Vec::with_capacity(1),
            answer_wire: OnceLock::new(),
        }
    }

    /// Adds `rdata` unless the set has it already. RFC 2181 §5.2: one TTL
    /// per RRset; where the file disagrees, the lowest wins.
    pub fn add(&mut self, ttl: u32, rdata: RData) {
        self.ttl = self.ttl.min(ttl);
        if !self.rdatas.contains(&rdata) {
            self.rdatas.push(rdata);
        }
        // A record added after the first answer makes the template stale.
        self.answer_wire = OnceLock::new();
    }

    pub fn record_type(&self) -> RecordType {
        self.record_type
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    pub fn rdatas(&self) -> &[RData] {
        &self.rdatas
    }

    /// The set's records, owned by `owner`.
    pub fn records<'a>(&'a self, owner: &'a Name) -> impl Iterator<Item = Record> + 'a {
        self.rdatas
            .iter()
            .map(move |rdata| Record::from_rdata(owner.clone(), self.ttl, rdata.clone()))
    }

    /// The pre-encoded answer records, one slice each, in zone order.
    pub fn answer_records(&self) -> AnswerRecords<'_> {
        AnswerRecords {
            rest: self
                .answer_wire
                .get_or_init(|| self.encode_answer().into_boxed_slice()),
        }
    }

    fn encode_answer(&self) -> Vec<u8> {
        let mut wire = Vec::with_capacity(self.rdatas.len() * (RECORD_HEADER_LEN + 16));
        for rdata in &self.rdatas {
            let Some(data) = encode_rdata(rdata) else {
                // Unencodable data cannot be answered from a template; the
                // set then has none, and answers go through the encoder.
                return Vec::new();
            };
            wire.extend_from_slice(&POINTER_TO_QUESTION);
            wire.extend_from_slice(&u16::from(self.record_type).to_be_bytes());
            wire.extend_from_slice(&1u16.to_be_bytes());
            wire.extend_from_slice(&self.ttl.to_be_bytes());
            wire.extend_from_slice(&(data.len() as u16).to_be_bytes());
            wire.extend_from_slice(&data);
        }
        wire
    }
}

/// RDATA in wire form, names uncompressed and in their original case.
pub fn encode_rdata(rdata: &RData) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut encoder = BinEncoder::new(&mut data);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut encoder).ok()?;
    (data.len() <= u16::MAX as usize).then_some(data)
}

/// Iterates over the records of an [`Rrset`]'s answer template.
#[derive(Clone)]
pub struct AnswerRecords<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AnswerRecords<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let length = self.rest.get(RECORD_HEADER_LEN - 2..RECORD_HEADER_LEN)?;
        let len = RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([length[0], length[1]]));
        let (record, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::{A, CNAME};

    use super::*;

    #[test]
    fn answer_records_are_pre_encoded() {
        let mut set = Rrset::new(RecordType::A, 300);
        set.add(300, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
        set.add(60, RData::A(A(Ipv4Addr::new(192, 0, 2, 2))));
        set.add(60, RData::A(A(Ipv4Addr::new(192, 0, 2, 2))));
        let records: Vec<&[u8]> = set.answer_records().collect();
        assert_eq!(records.len(), 2, "duplicates are dropped");
        assert_eq!(
            records[1],
            [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2],
            "lowest TTL for all"
        );
    }

    #[test]
    fn names_in_rdata_keep_their_case_uncompressed() {
        let mut set = Rrset::new(RecordType::CNAME, 60);
        set.add(
            60,
            RData::CNAME(CNAME(Name::from_ascii("WWW.Example.com.").unwrap())),
        );
        let record = set.answer_records().next().unwrap();
        assert_eq!(
            &record[RECORD_HEADER_LEN..],
            b"\x03WWW\x07Example\x03com\x00"
        );
    }
}
