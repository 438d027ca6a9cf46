//! The common case without the general encoder: a plain query (a standard
//! query, one question, class IN, at most an OPT record without options)
//! whose answer is an RRset, NODATA or NXDOMAIN. The answer is built by
//! copying the question and the zone's pre-encoded records, as the kernel
//! does; everything else goes to the general path in `respond`.
//!
//! With DO, a zone without DNSSEC data answers the same, DO echoed; a zone
//! signed online answers an RRset of its own with the RRSIGs its signer
//! holds fresh (their data kept in wire form). What DNSSEC must prove
//! (denials, wildcards), signatures not yet made, and zones signed
//! elsewhere go the general way.

use hickory_proto::rr::{RData, RecordType};

use dns_common::wire::{
    CLASSIC_UDP_PAYLOAD, HEADER_LEN, OPT_DO, OPT_FLAGS_AT, OPT_LEN, QUERY_FLAGS0_CLEAR,
    QUERY_FLAGS1_CLEAR, RCODE_NXDOMAIN, TYPE_OPT,
};

use super::respond::Signers;
use crate::signer::denial::EDNS_FLAG_CO;
use crate::zone::{Catalog, Lookup, additional_target, wire};

/// CO (RFC 9824), in the OPT flags byte that holds DO.
const OPT_CO: u8 = (EDNS_FLAG_CO >> 8) as u8;

/// A query the fast path can answer, borrowed from the request.
pub struct PlainQuery<'a> {
    request: &'a [u8],
    question_end: usize,
    /// The question name, lowercase wire form, in `name[..name_len]`.
    name: [u8; 255],
    name_len: usize,
    record_type: RecordType,
    /// The client's EDNS payload size, when it sent an OPT record.
    edns_payload: Option<u16>,
    /// The high byte of the answer's OPT flags: DO echoed, and CO with it
    /// (RFC 9824 §4).
    opt_flags: u8,
}

impl<'a> PlainQuery<'a> {
    /// `None` unless `request` is a plain query, whole and well formed.
    pub fn parse(request: &'a [u8]) -> Option<PlainQuery<'a>> {
        let header = request.get(..HEADER_LEN)?;
        // QR=0, opcode QUERY, TC=0, Z=0, RCODE=0, as the kernel requires.
        if header[2] & QUERY_FLAGS0_CLEAR != 0 || header[3] & QUERY_FLAGS1_CLEAR != 0 {
            return None;
        }
        let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        let additional = count(10);
        if count(4) != 1 || count(6) != 0 || count(8) != 0 || additional > 1 {
            return None;
        }
        let mut name = [0u8; 255];
        let name_len = wire::read_lowercase(&request[HEADER_LEN..], &mut name)?;
        let fixed = request.get(HEADER_LEN + name_len..HEADER_LEN + name_len + 4)?;
        let record_type = RecordType::from(u16::from_be_bytes([fixed[0], fixed[1]]));
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let question_end = HEADER_LEN + name_len + 4;
        // ANY and RRSIG answers are chosen, not copied: the general path.
        if class != 1
            || matches!(
                record_type,
                RecordType::ANY | RecordType::OPT | RecordType::RRSIG
            )
        {
            return None;
        }
        let mut end = question_end;
        let mut edns_payload = None;
        let mut opt_flags = 0;
        if additional == 1 {
            let opt = request.get(question_end..question_end + OPT_LEN)?;
            let field = |at: usize| u16::from_be_bytes([opt[at], opt[at + 1]]);
            // Root owner, type OPT, extended RCODE 0, version 0, no
            // options: anything else takes the general path.
            if opt[0] != 0 || field(1) != TYPE_OPT || opt[5] != 0 || opt[6] != 0 || field(9) != 0 {
                return None;
            }
            edns_payload = Some(field(3));
            let flags = opt[OPT_FLAGS_AT];
            if flags & OPT_DO != 0 {
                opt_flags = flags & (OPT_DO | OPT_CO);
            }
            end += OPT_LEN;
        }
        if end != request.len() {
            return None;
        }
        Some(PlainQuery {
            request,
            question_end,
            name,
            name_len,
            record_type,
            edns_payload,
            opt_flags,
        })
    }

    /// The question name, lowercase wire form.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    /// The answer, or `None` when it needs the general path (aliases,
    /// referrals, names outside every zone, answers too big for `limit`,
    /// DNSSEC beyond cached signatures). `rotation` picks the first record
    /// of rotated A and AAAA sets; `signers` sign the zones signed online.
    /// The answer is written to `answer` (cleared first).
    pub fn answer_into(
        &self,
        answer: &mut Vec<u8>,
        (catalog, signers): (&Catalog, &Signers),
        server_payload: u16,
        max_len: Option<usize>,
        rotation: usize,
    ) -> Option<()> {
        let name = &self.name[..self.name_len];
        let zone = catalog.find(name)?;
        let dnssec_ok = self.opt_flags & OPT_DO != 0;
        let signer = match dnssec_ok && zone.is_signed() {
            // Signed elsewhere: the zone's RRSIGs and NSECs are chosen by
            // the general path.
            true if !zone.is_online() => return None,
            true => Some(signers.get(zone.origin().as_bytes())?),
            false => None,
        };
        let lookup = zone.lookup(name, self.record_type);
        if signer.is_some() && !(matches!(lookup, Lookup::Answer(_)) && zone.node(name).is_some()) {
            // A denial, or a wildcard's answer, which proves the name
            // absent too.
            return None;
        }
        let (rcode, rrset) = match lookup {
            // Answers with an additional section take the general path.
            Lookup::Answer(set)
                if set
                    .rdatas()
                    .iter()
                    .any(|rdata| additional_target(rdata).is_some()) =>
            {
                return None;
            }
            Lookup::Answer(set) => (0, Some(set)),
            Lookup::NoData => (0, None),
            Lookup::NxDomain => (RCODE_NXDOMAIN, None),
            Lookup::Alias(_) | Lookup::Delegation(..) => return None,
        };
        let limit = max_len.unwrap_or_else(|| match self.edns_payload {
            Some(client) => usize::from(client.min(server_payload).max(CLASSIC_UDP_PAYLOAD)),
            None => usize::from(CLASSIC_UDP_PAYLOAD),
        });

        let request = self.request;
        answer.clear();
        answer.extend_from_slice(&request[..2]);
        // QR=1, AA=1, RD echoed; RA=0, AD=0, CD echoed.
        answer.push(0x84 | (request[2] & 0x01));
        answer.push((request[3] & 0x10) | rcode);
        answer.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns_payload.is_some())]);
        answer.extend_from_slice(&request[HEADER_LEN..self.question_end]);
        let mut answers = 0u16;
        match rrset {
            Some(set) => {
                let count = set.rdatas().len();
                let rotate = matches!(set.record_type(), RecordType::A | RecordType::AAAA);
                let first = if rotate { rotation % count.max(1) } else { 0 };
                for record in set.answer_records().cycle().skip(first).take(count) {
                    answer.extend_from_slice(record);
                    answers += 1;
                }
                if usize::from(answers) != count {
                    // The set has no template (data that would not encode).
                    return None;
                }
                if let Some(signer) = signer {
                    let now = crate::signer::now();
                    let rrsigs =
                        signer.cached(name, set.record_type(), set.ttl(), set.rdatas(), now)?;
                    for rrsig in rrsigs.iter() {
                        // The signer keeps each RRSIG's data as its bytes.
                        let RData::Unknown { rdata, .. } = rrsig else {
                            return None;
                        };
                        wire::append_rrsig_record(answer, set.ttl(), &rdata.anything)?;
                        answers += 1;
                    }
                }
            }
            None => {
                let soa = zone.negative_soa_wire();
                if soa.is_empty() {
                    return None;
                }
                answer.extend_from_slice(soa);
                answer[9] = 1;
            }
        }
        answer[6..8].copy_from_slice(&answers.to_be_bytes());
        if self.edns_payload.is_some() {
            let [high, low] = server_payload.to_be_bytes();
            let flags = self.opt_flags;
            answer.extend_from_slice(&[0, 0, 41, high, low, 0, 0, flags, 0, 0, 0]);
        }
        (answer.len() <= limit).then_some(())
    }
}
