//! Records in RFC 3597's generic form, `TYPEnnn` and `\# length hex`, which
//! hickory's master-file parser does not read: the loader hands such
//! entries here and blanks them out of the text hickory sees.

use std::str::FromStr;

use hickory_proto::{
    rr::{Name, RData, RecordType},
    serialize::binary::{BinDecoder, Restrict},
};

/// One record read from a generic entry.
pub struct GenericRecord {
    pub owner: Name,
    pub record_type: RecordType,
    pub ttl: u32,
    pub rdata: RData,
}

/// The entry's words, comments and parentheses removed.
fn words(entry: &str) -> Vec<&str> {
    entry
        .lines()
        .map(|line| line.split(';').next().unwrap_or(""))
        .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == '(' || c == ')'))
        .filter(|word| !word.is_empty())
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

/// Whether the entry is a record in generic form.
pub fn is_generic(entry: &str) -> bool {
    // Every entry of a zone comes through here: a byte scan rules out
    // nearly all of them before any splitting into words.
    let maybe = entry.contains("\\#")
        || entry
            .as_bytes()
            .windows(4)
            .any(|window| window.eq_ignore_ascii_case(b"TYPE"));
    maybe
        && words(entry)
            .iter()
            .any(|word| *word == "\\#" || numbered_type(word).is_some())
}

/// Reads a generic entry: `owner [ttl] [class] type \# length hex...`. The
/// owner must be written out (relative names are taken to `origin`); a
/// missing TTL is `default_ttl`.
pub fn parse(
    entry: &str,
    in_first_column: bool,
    origin: &Name,
    default_ttl: Option<u32>,
) -> Result<GenericRecord, String> {
    if !in_first_column {
        return Err("a record in RFC 3597 generic form must name its owner".into());
    }
    let words = words(entry);
    let mut rest = words.iter().copied();
    let owner = match rest.next() {
        Some("@") => origin.clone(),
        Some(owner) => Name::parse(owner, Some(origin))
            .map_err(|error| format!("bad owner {owner}: {error}"))?,
        None => return Err("empty record".into()),
    };
    let mut ttl = default_ttl;
    let record_type = loop {
        let word = rest.next().ok_or("no record type")?;
        if let Ok(seconds) = word.parse::<u32>() {
            ttl = Some(seconds);
        } else if word.eq_ignore_ascii_case("IN") || word.eq_ignore_ascii_case("CLASS1") {
            continue;
        } else if let Some(code) = numbered_type(word) {
            break RecordType::from(code);
        } else {
            break RecordType::from_str(&word.to_ascii_uppercase())
                .map_err(|_| format!("unknown record type {word}"))?;
        }
    };
    let ttl = ttl.ok_or("no TTL, and no $TTL before it")?;
    if rest.next() != Some("\\#") {
        return Err(format!(
            "{record_type} in generic form needs \\# and a length"
        ));
    }
    let length: u16 = rest
        .next()
        .and_then(|word| word.parse().ok())
        .ok_or("the length after \\# is missing or not a number")?;
    let hex: String = rest.collect();
    if hex.len() != usize::from(length) * 2 {
        return Err(format!(
            "\\# says {length} bytes, the data has {} hex digits",
            hex.len()
        ));
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| "the data is not hexadecimal".to_string())?;
    let rdata = RData::read(
        &mut BinDecoder::new(&bytes),
        record_type,
        Restrict::new(length),
    )
    .map_err(|error| format!("the data is not valid {record_type}: {error}"))?;
    Ok(GenericRecord {
        owner,
        record_type,
        ttl,
        rdata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    #[test]
    fn reads_unknown_and_known_types() {
        let unknown = parse("x 60 IN TYPE65400 \\# 4 0A000001\n", true, &origin(), None).unwrap();
        assert_eq!(unknown.owner.to_string(), "x.example.com.");
        assert_eq!(
            (unknown.record_type, unknown.ttl),
            (RecordType::Unknown(65400), 60)
        );
        let a = parse("y A \\# 4 C0000201 ; comment\n", true, &origin(), Some(300)).unwrap();
        assert_eq!(
            (a.record_type, a.ttl, a.rdata.to_string()),
            (RecordType::A, 300, "192.0.2.1".to_string())
        );
        assert!(is_generic("z TYPE1 \\# 4 C0000201") && !is_generic("z A 192.0.2.1"));
    }

    #[test]
    fn says_what_is_wrong() {
        let error = |text: &str| parse(text, true, &origin(), Some(60)).err().unwrap();
        assert!(error("x TYPE65400 \\# 4 0A00").contains("4 bytes"));
        assert!(error("x TYPE65400 \\# 2 zz00").contains("hexadecimal"));
        assert!(error("x TYPE65400 0A000001").contains("\\#"));
        assert!(parse(" TYPE65400 \\# 0", false, &origin(), Some(60)).is_err());
    }
}
