//! Reading a master file into a [`Zone`], with errors that say where.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use hickory_proto::{
    rr::{DNSClass, LowerName, Name, RecordSet, RecordType, RrKey},
    serialize::txt::Parser,
};

use super::{
    Zone,
    entries::{entries, first_failing},
};

/// A zone file that cannot be served, and where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ZoneError {
    pub file: PathBuf,
    /// The line the offending entry starts on, when there is one.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Reads and checks the master file at `path` for the zone `origin`.
pub fn load_zone(origin: &Name, path: &Path) -> Result<Zone, ZoneError> {
    let text = fs::read_to_string(path).map_err(|error| ZoneError {
        file: path.to_path_buf(),
        line: None,
        message: format!("cannot read the zone file: {error}"),
    })?;
    parse_zone(origin, &text, path)
}

/// Parses and checks master-file `text` for the zone `origin`; `path` names
/// it in errors and anchors relative `$INCLUDE`s.
pub fn parse_zone(origin: &Name, text: &str, path: &Path) -> Result<Zone, ZoneError> {
    let error = |line, message| ZoneError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let origin = origin.to_lowercase();
    let rrsets = match check(&origin, text, path) {
        Ok(rrsets) => rrsets,
        Err(message) => {
            // Find the entry at which the file first goes wrong, and report
            // that entry's own complaint.
            let all = entries(text);
            return Err(
                match first_failing(text, &all, |prefix| check(&origin, prefix, path).is_err()) {
                    Some(entry) => {
                        let prefix = &text[..entry.end];
                        let message = check(&origin, prefix, path).err().unwrap_or(message);
                        error(Some(entry.line), message)
                    }
                    None => error(None, message),
                },
            );
        }
    };
    let has_soa = rrsets.keys().any(|key| key.record_type == RecordType::SOA);
    if !has_soa {
        return Err(error(
            None,
            format!("no SOA record at the zone apex {origin}"),
        ));
    }
    Ok(Zone::from_rrsets(origin, rrsets.into_values()))
}

/// Parses `text` and checks what must hold of every prefix of a good file.
fn check(origin: &Name, text: &str, path: &Path) -> Result<BTreeMap<RrKey, RecordSet>, String> {
    let (_, rrsets) = Parser::new(text, Some(path.to_path_buf()), Some(origin.clone()))
        .parse()
        .map_err(|error| error.to_string())?;
    let apex = LowerName::new(origin);
    for (key, set) in &rrsets {
        let owner = &key.name;
        if !apex.zone_of(owner) {
            return Err(format!("{owner} is outside the zone {origin}"));
        }
        if let Some(record) = set
            .records_without_rrsigs()
            .find(|r| r.dns_class != DNSClass::IN)
        {
            return Err(format!(
                "{owner}: class {} is not supported, only IN",
                record.dns_class
            ));
        }
        match key.record_type {
            RecordType::SOA if *owner != apex => {
                return Err(format!(
                    "SOA record at {owner}, not at the zone apex {origin}"
                ));
            }
            RecordType::SOA if set.records_count() > 1 => {
                return Err(format!("more than one SOA record at {origin}"));
            }
            RecordType::CNAME => {
                let other = rrsets
                    .keys()
                    .find(|other| other.name == *owner && other.record_type != RecordType::CNAME);
                if let Some(other) = other {
                    return Err(format!(
                        "{owner} has a CNAME and other data ({})",
                        other.record_type
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(rrsets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::Lookup;

    const ZONE: &str = "$TTL 300
@       IN SOA ns1 hostmaster ( 1 7200 3600 1209600 60 )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.1
        IN A   192.0.2.2
a.b.c   IN TXT \"deep\"
alias   IN CNAME www
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.99
";

    fn parse(text: &str) -> Result<Zone, ZoneError> {
        parse_zone(
            &Name::from_ascii("example.com.").unwrap(),
            text,
            Path::new("example.com.zone"),
        )
    }

    fn lower(name: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(name).unwrap())
    }

    #[test]
    fn loads_records_and_answers_lookups() {
        let zone = parse(ZONE).unwrap();
        assert_eq!(zone.soa().records_count(), 1);
        match zone.lookup(&lower("WWW.example.com."), RecordType::A) {
            Lookup::Answer(set) => assert_eq!(set.records_count(), 2),
            other => panic!("expected an answer, got {other:?}"),
        }
        assert!(matches!(
            zone.lookup(&lower("www.example.com."), RecordType::AAAA),
            Lookup::NoData
        ));
        assert!(
            matches!(
                zone.lookup(&lower("b.c.example.com."), RecordType::A),
                Lookup::NoData
            ),
            "empty non-terminal"
        );
        assert!(matches!(
            zone.lookup(&lower("nope.example.com."), RecordType::A),
            Lookup::NxDomain
        ));
        assert!(matches!(
            zone.lookup(&lower("alias.example.com."), RecordType::A),
            Lookup::Alias(_)
        ));
        assert!(matches!(
            zone.lookup(&lower("ns.sub.example.com."), RecordType::A),
            Lookup::Delegation(_)
        ));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let bad = ZONE.replace("www     IN A   192.0.2.1", "www     IN A   192.0.2.300");
        let error = parse(&bad).unwrap_err();
        assert_eq!(error.line, Some(5), "{error}");
        assert!(
            error.to_string().starts_with("example.com.zone:5: "),
            "{error}"
        );
    }

    #[test]
    fn errors_after_a_multi_line_record_count_its_lines() {
        let bad = ZONE.replace("( 1 7200 3600 1209600 60 )", "( 1 7200\n 3600 1209600 60 )")
            + "oops IN BOGUS x\n";
        let error = parse(&bad).unwrap_err();
        assert_eq!(error.line, Some(12), "{error}");
    }

    #[test]
    fn rejects_records_outside_the_zone() {
        let error = parse(&format!("{ZONE}www.example.net. IN A 192.0.2.7\n")).unwrap_err();
        assert_eq!(error.line, Some(11), "{error}");
        assert!(error.message.contains("outside the zone"), "{error}");
    }

    #[test]
    fn rejects_cname_beside_other_data() {
        let error = parse(&format!("{ZONE}alias IN TXT \"x\"\n")).unwrap_err();
        assert_eq!(error.line, Some(11), "{error}");
        assert!(error.message.contains("CNAME and other data"), "{error}");
    }

    #[test]
    fn requires_an_soa() {
        let error = parse("www 300 IN A 192.0.2.1\n").unwrap_err();
        assert_eq!(error.line, None);
        assert!(error.message.contains("no SOA"), "{error}");
    }
}
