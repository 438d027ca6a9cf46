//! Compact denial of existence (RFC 9824): every negative answer carries
//! one NSEC, owned by the name asked, whose span covers nothing but that
//! name: its next name is the name's immediate successor in canonical
//! order (`\000.` + name). A missing name gets NOERROR with the NXNAME
//! pseudo-type in the bitmap (NXDOMAIN when the query sets CO); a name
//! without the type asked, an empty non-terminal or a delegation without
//! DS lists the types it has. A resolver that caches NSEC aggressively
//! (RFC 8198) can deny from it only the name and type it was told about.

use hickory_proto::{
    dnssec::rdata::{DNSSECRData, NSEC},
    rr::{Name, RData, RecordType},
};

/// RFC 9824 §3.2: the meta-type that marks a name as non-existent.
pub const NXNAME: RecordType = RecordType::Unknown(128);

/// The EDNS flag CO ("compact answers OK", RFC 9824 §4): the resolver
/// takes NXDOMAIN with a compact denial.
pub const EDNS_FLAG_CO: u16 = 0x4000;

/// The name right after `name` in canonical order: `\000.name`. A name
/// already as long as names go has none; its own NSEC then points at it.
fn successor(name: &Name) -> Name {
    name.prepend_label(&[0u8][..])
        .unwrap_or_else(|_| name.clone())
}

/// The NSEC data for `name`, which exists with `types` (the name's own
/// RRsets; an empty non-terminal has none).
pub fn existing(name: &Name, types: impl IntoIterator<Item = RecordType>) -> RData {
    let mut types: Vec<RecordType> = types
        .into_iter()
        .chain([RecordType::RRSIG, RecordType::NSEC])
        .collect();
    types.sort_by_key(|t| u16::from(*t));
    types.dedup();
    RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(successor(name), types)))
}

/// The NSEC data for `name`, which does not exist.
pub fn missing(name: &Name) -> RData {
    RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(
        successor(name),
        [RecordType::RRSIG, RecordType::NSEC, NXNAME],
    )))
}

#[cfg(test)]
mod tests {
    use hickory_proto::serialize::binary::BinEncodable;

    use super::*;

    fn nsec(rdata: &RData) -> &NSEC {
        match rdata {
            RData::DNSSEC(DNSSECRData::NSEC(nsec)) => nsec,
            other => panic!("not an NSEC: {other:?}"),
        }
    }

    #[test]
    fn a_missing_name_spans_itself_alone_with_nxname() {
        let name = Name::from_ascii("nope.example.com.").unwrap();
        let rdata = missing(&name);
        let nsec = nsec(&rdata);
        assert_eq!(
            nsec.next_domain_name().to_ascii(),
            "\\000.nope.example.com."
        );
        let types: Vec<RecordType> = nsec.type_bit_maps().collect();
        assert_eq!(types, vec![RecordType::RRSIG, RecordType::NSEC, NXNAME]);
        // Window 0, 17 bytes: RRSIG (46) and NSEC (47) in the sixth,
        // NXNAME (128) the first bit of the last.
        let wire = rdata.to_bytes().unwrap();
        let bitmap = [[0, 17, 0, 0, 0, 0, 0, 3].as_slice(), &[0; 10], &[0x80]].concat();
        assert!(wire.ends_with(&bitmap), "{wire:?}");
    }

    #[test]
    fn an_existing_name_lists_its_types_and_an_empty_non_terminal_none() {
        let name = Name::from_ascii("www.example.com.").unwrap();
        let with = existing(&name, [RecordType::AAAA, RecordType::A]);
        let types: Vec<RecordType> = nsec(&with).type_bit_maps().collect();
        assert_eq!(
            types,
            vec![
                RecordType::A,
                RecordType::AAAA,
                RecordType::RRSIG,
                RecordType::NSEC
            ]
        );
        let empty = existing(&name, []);
        let types: Vec<RecordType> = nsec(&empty).type_bit_maps().collect();
        assert_eq!(types, vec![RecordType::RRSIG, RecordType::NSEC]);
    }
}
