//! Records hickory's master-file parser does not read: RFC 3597's generic
//! form (`TYPEnnn`, `\# length hex`), and the DNSSEC types it refuses as
//! "dynamically generated" (RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY,
//! CDNSKEY, DS, CDS), which a zone signed elsewhere holds. The loader hands
//! such entries here and blanks them out of the text hickory sees; their
//! record data is read by NLnet Labs' `domain`, then decoded by hickory
//! from its wire form.

use std::str::FromStr;

use domain::{
    base::{Rtype, rdata::ComposeRecordData, scan::IterScanner},
    rdata::ZoneRecordData,
};
use hickory_proto::{
    rr::{Name, RData, RecordType},
    serialize::binary::{BinDecoder, Restrict},
};

/// One record read from an entry.
pub struct GenericRecord {
    pub owner: Name,
    pub record_type: RecordType,
    pub ttl: u32,
    pub rdata: RData,
}

/// The types whose presentation form hickory's parser refuses.
const DNSSEC_TYPES: [RecordType; 8] = [
    RecordType::RRSIG,
    RecordType::NSEC,
    RecordType::NSEC3,
    RecordType::NSEC3PARAM,
    RecordType::DNSKEY,
    RecordType::CDNSKEY,
    RecordType::DS,
    RecordType::CDS,
];

/// The entry's words, as text (a quoted string without its quotes).
fn words(entry: &str) -> Vec<String> {
    super::entries::words(entry)
        .into_iter()
        .map(|word| word.text)
        .collect()
}

/// `TYPE` followed by a number: RFC 3597's name for any type.
fn numbered_type(word: &str) -> Option<u16> {
    let digits = word
        .get(..4)
        .filter(|prefix| prefix.eq_ignore_ascii_case("TYPE"))
        .and(word.get(4..))?;
    digits.parse().ok()
}

fn is_class(word: &str) -> bool {
    word.eq_ignore_ascii_case("IN") || word.eq_ignore_ascii_case("CLASS1")
}

/// The entry's TTL (if written), its type and the words after the type.
fn fields(
    words: &[String],
    default_ttl: Option<u32>,
) -> Result<(Option<u32>, RecordType, &[String]), String> {
    let mut ttl = default_ttl;
    for (at, word) in words.iter().enumerate() {
        if let Ok(seconds) = word.parse::<u32>() {
            ttl = Some(seconds);
        } else if is_class(word) {
            continue;
        } else {
            let record_type = match numbered_type(word) {
                Some(code) => RecordType::from(code),
                None => RecordType::from_str(&word.to_ascii_uppercase())
                    .map_err(|_| format!("unknown record type {word}"))?,
            };
            return Ok((ttl, record_type, &words[at + 1..]));
        }
    }
    Err("no record type".into())
}

/// Whether hickory's parser cannot read the entry (a record in generic
/// form or of a DNSSEC type); `in_first_column` says whether its first
/// word is its owner.
pub fn is_ours(entry: &str, in_first_column: bool) -> bool {
    // Every entry of a zone comes through here: a byte scan rules out
    // nearly all of them before any splitting into words.
    let maybe = entry.contains("\\#")
        || ["TYPE", "RRSIG", "NSEC", "DNSKEY", "DS"]
            .iter()
            .any(|word| {
                entry
                    .as_bytes()
                    .windows(word.len())
                    .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
            });
    if !maybe {
        return false;
    }
    let words = words(entry);
    let after_owner = &words[usize::from(in_first_column).min(words.len())..];
    match fields(after_owner, None) {
        Ok((_, record_type, rest)) => {
            DNSSEC_TYPES.contains(&record_type)
                || rest.first().is_some_and(|word| word == "\\#")
                || matches!(record_type, RecordType::Unknown(_))
        }
        Err(_) => false,
    }
}

/// Reads an entry: `owner [ttl] [class] type rdata`, the rdata in its
/// presentation form or RFC 3597's generic one. Relative names are taken
/// to `origin`; an entry that does not name its owner (`inherited` is
/// given) has the owner of the entry before it; a missing TTL is
/// `default_ttl`.
pub fn parse(
    entry: &str,
    inherited: Option<&Name>,
    origin: &Name,
    default_ttl: Option<u32>,
) -> Result<GenericRecord, String> {
    let words = words(entry);
    let (owner, rest) = match inherited {
        Some(owner) => (owner.clone(), &words[..]),
        None => {
            let (first, rest) = words.split_first().ok_or("empty record")?;
            (absolute(first, origin)?, rest)
        }
    };
    let (ttl, record_type, rdata) = fields(rest, default_ttl)?;
    let ttl = ttl.ok_or("no TTL, and no $TTL before it")?;
    let bytes = match rdata.first().map(String::as_str) {
        Some("\\#") => generic_data(record_type, &rdata[1..])?,
        _ => presentation_data(record_type, rdata, origin)?,
    };
    let rdata = RData::read(
        &mut BinDecoder::new(&bytes),
        record_type,
        Restrict::new(bytes.len() as u16),
    )
    .map_err(|error| format!("the data is not valid {}: {error}", type_name(record_type)))?;
    Ok(GenericRecord {
        owner,
        record_type,
        ttl,
        rdata,
    })
}

/// `name` made absolute: `@` is `origin`, a name without a final dot is
/// below it.
fn absolute(name: &str, origin: &Name) -> Result<Name, String> {
    match name {
        "@" => Ok(origin.clone()),
        _ => Name::parse(name, Some(origin)).map_err(|error| format!("bad name {name}: {error}")),
    }
}

/// The record data after `\#`: a length and that many bytes in hex.
fn generic_data(record_type: RecordType, words: &[String]) -> Result<Vec<u8>, String> {
    let (length, hex) = words.split_first().ok_or(format!(
        "{} in generic form needs a length after \\#",
        type_name(record_type)
    ))?;
    let length: u16 = length
        .parse()
        .map_err(|_| "the length after \\# is not a number")?;
    let hex: String = hex.concat();
    if hex.len() != usize::from(length) * 2 {
        return Err(format!(
            "\\# says {length} bytes, the data has {} hex digits",
            hex.len()
        ));
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| "the data is not hexadecimal".to_string())
}

/// The words of the record data that are domain names, by type: these are
/// made absolute before `domain` reads them (it takes every name as
/// absolute).
fn name_positions(record_type: RecordType) -> &'static [usize] {
    match record_type {
        RecordType::NS
        | RecordType::CNAME
        | RecordType::PTR
        | RecordType::ANAME
        | RecordType::NSEC => &[0],
        RecordType::MX => &[1],
        RecordType::SRV => &[3],
        RecordType::SOA => &[0, 1],
        RecordType::RRSIG => &[7],
        _ => &[],
    }
}

/// The type as a zone file names it (RFC 3597's `TYPEnnn` for a type
/// without a name).
fn type_name(record_type: RecordType) -> String {
    match record_type {
        RecordType::Unknown(code) => format!("TYPE{code}"),
        known => known.to_string(),
    }
}

/// The wire form of record data in presentation form, read by `domain`.
fn presentation_data(
    record_type: RecordType,
    words: &[String],
    origin: &Name,
) -> Result<Vec<u8>, String> {
    let named = type_name(record_type);
    let positions = name_positions(record_type);
    let mut tokens = Vec::with_capacity(words.len());
    for (at, word) in words.iter().enumerate() {
        tokens.push(if positions.contains(&at) {
            absolute(word, origin)?.to_ascii()
        } else {
            word.clone()
        });
    }
    let mut scanner = IterScanner::<_, Vec<u8>>::new(tokens.iter());
    let data = ZoneRecordData::scan(Rtype::from_int(u16::from(record_type)), &mut scanner)
        .map_err(|error| format!("bad {named} data: {error}"))?;
    if !scanner.is_exhausted() {
        return Err(format!("more {named} data than the type takes"));
    }
    let mut bytes = Vec::new();
    data.compose_rdata(&mut bytes)
        .map_err(|_| format!("{named} data too long"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    #[test]
    fn reads_unknown_and_known_types() {
        let unknown = parse("x 60 IN TYPE65400 \\# 4 0A000001\n", None, &origin(), None).unwrap();
        assert_eq!(unknown.owner.to_string(), "x.example.com.");
        assert_eq!(
            (unknown.record_type, unknown.ttl),
            (RecordType::Unknown(65400), 60)
        );
        let a = parse("y A \\# 4 C0000201 ; comment\n", None, &origin(), Some(300)).unwrap();
        assert_eq!(
            (a.record_type, a.ttl, a.rdata.to_string()),
            (RecordType::A, 300, "192.0.2.1".to_string())
        );
        assert!(is_ours("z TYPE1 \\# 4 C0000201", true) && !is_ours("z A 192.0.2.1", true));
    }

    #[test]
    fn says_what_is_wrong() {
        let error = |text: &str| parse(text, None, &origin(), Some(60)).err().unwrap();
        assert!(error("x TYPE65400 \\# 4 0A00").contains("4 bytes"));
        assert!(error("x TYPE65400 \\# 2 zz00").contains("hexadecimal"));
        let presentation = error("x TYPE65400 0A000001");
        assert!(presentation.contains("65400"), "{presentation}");
    }
}
