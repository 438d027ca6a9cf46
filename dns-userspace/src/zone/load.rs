//! Reading a master file into a [`Zone`], with errors that say where.

use std::{collections::BTreeMap, fs, path::Path};

use hickory_proto::{
    rr::{DNSClass, LowerName, Name, RecordSet, RecordSetParts, RecordType, RrKey},
    serialize::txt::Parser,
};

use crate::file_error::FileError;

use super::{
    WireName, Zone,
    entries::{Entry, entries, first_failing},
    generic,
};

/// A zone file that cannot be served, and where the problem is.
pub type ZoneError = FileError;

/// Reads and checks the master file at `path` for the zone `origin`.
pub fn load_zone(origin: &Name, path: &Path) -> Result<Zone, ZoneError> {
    let text = fs::read_to_string(path)
        .map_err(|error| FileError::new(path, format!("cannot read the zone file: {error}")))?;
    parse_zone(origin, &text, path)
}

/// Entries parsed at a time. The parser's own representation of a record
/// is several times the size of the zone's, so a big file is parsed in
/// chunks whose records move into the zone before the next chunk is read.
const CHUNK_ENTRIES: usize = 10_000;

/// Parses and checks master-file `text` for the zone `origin`; `path` names
/// it in errors and anchors relative `$INCLUDE`s.
pub fn parse_zone(origin: &Name, text: &str, path: &Path) -> Result<Zone, ZoneError> {
    parse_in_chunks(origin, text, path, CHUNK_ENTRIES)
}

fn parse_in_chunks(
    origin: &Name,
    text: &str,
    path: &Path,
    chunk_entries: usize,
) -> Result<Zone, ZoneError> {
    let origin = origin.to_lowercase();
    let all = entries(text);
    let splittable = !all
        .iter()
        .any(|entry| directive(entry.text(text)) == Some(Directive::Include));
    let mut zone = Zone::new(&origin)
        .ok_or_else(|| FileError::new(path, format!("the origin {origin} is not a valid name")))?;
    // Records hickory's parser does not read (RFC 3597's generic form, the
    // DNSSEC types) are read here, and blanked out of the text hickory
    // parses (byte offsets and line numbers unchanged).
    let generic_entries = ours(text, &all);
    let generic_starts: Vec<usize> = generic_entries.iter().map(|entry| entry.start).collect();
    let blanked = blank(text, &generic_entries);
    let mut generics = Vec::new();
    let mut in_force = InForce::default();
    let mut first = 0;
    while first < all.len() {
        let prelude = in_force.prelude(text);
        let mut last = first;
        // A chunk ends before an entry that stands on its own: it names
        // its owner, and a $TTL is known (without one, a record inherits
        // the previous record's TTL, which a fresh parse would not know).
        while last < all.len() {
            let entry = &all[last];
            let may_end_here =
                last - first >= chunk_entries && entry.in_first_column && in_force.ttl.is_some();
            if may_end_here && splittable {
                break;
            }
            in_force.see(entry, text);
            if generic_starts.binary_search(&entry.start).is_ok() {
                let record_origin = in_force.origin_name(text).unwrap_or_else(|| origin.clone());
                let problem = |message| FileError::new(path, message).at_line(Some(entry.line));
                let inherited = match entry.in_first_column {
                    true => None,
                    false => Some(
                        in_force
                            .owner_name(text, &origin)
                            .ok_or_else(|| problem("no owner, and no record before it".into()))?,
                    ),
                };
                let record = generic::parse(
                    entry.text(text),
                    inherited.as_ref(),
                    &record_origin,
                    in_force.ttl_seconds(text),
                )
                .map_err(problem)?;
                generics.push((entry.line, record));
            }
            last += 1;
        }
        let chunk = Chunk {
            origin: &origin,
            path,
            prelude,
            text: &blanked,
            entries: &all[first..last],
        };
        chunk.add_to(&mut zone)?;
        for (line, record) in generics.drain(..) {
            add_generic(&mut zone, record)
                .map_err(|message| FileError::new(path, message).at_line(Some(line)))?;
        }
        first = last;
    }
    if zone
        .node(zone.origin().as_bytes())
        .and_then(|apex| apex.rrset(RecordType::SOA))
        .is_none()
    {
        return Err(FileError::new(
            path,
            format!("no SOA record at the zone apex {origin}"),
        ));
    }
    Ok(zone)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directive {
    Origin,
    Ttl,
    Include,
}

fn directive(entry: &str) -> Option<Directive> {
    let word = entry.split_whitespace().next()?.to_ascii_uppercase();
    match word.as_str() {
        "$ORIGIN" => Some(Directive::Origin),
        "$TTL" => Some(Directive::Ttl),
        "$INCLUDE" => Some(Directive::Include),
        _ => None,
    }
}

/// The entries hickory's parser cannot read: those [`generic::is_ours`]
/// says so of, and the ones after such an entry that take its owner
/// (hickory would give them the owner of the entry before, blanked out).
fn ours<'a>(text: &str, all: &'a [Entry]) -> Vec<&'a Entry> {
    let mut named_is_ours = false;
    all.iter()
        .filter(|entry| {
            let entry_text = entry.text(text);
            if directive(entry_text).is_some() {
                return false;
            }
            if entry.in_first_column {
                named_is_ours = generic::is_ours(entry_text, true);
                named_is_ours
            } else {
                named_is_ours || generic::is_ours(entry_text, false)
            }
        })
        .collect()
}

/// The `$ORIGIN` and `$TTL` entries in force at a point of the file, and
/// the last entry that named its owner (with the `$ORIGIN` of then).
#[derive(Default)]
struct InForce {
    origin: Option<Entry>,
    ttl: Option<Entry>,
    owner: Option<(Entry, Option<Entry>)>,
}

impl InForce {
    fn see(&mut self, entry: &Entry, text: &str) {
        match directive(entry.text(text)) {
            Some(Directive::Origin) => self.origin = Some(*entry),
            Some(Directive::Ttl) => self.ttl = Some(*entry),
            Some(Directive::Include) => {}
            None if entry.in_first_column => self.owner = Some((*entry, self.origin)),
            None => {}
        }
    }

    /// The owner an entry that does not name one takes: the last one
    /// named, read against the `$ORIGIN` in force then (or `origin`).
    fn owner_name(&self, text: &str, origin: &Name) -> Option<Name> {
        let (entry, origin_entry) = self.owner?;
        let then = InForce {
            origin: origin_entry,
            ..InForce::default()
        };
        let origin = then.origin_name(text).unwrap_or_else(|| origin.clone());
        let word = entry.text(text).split_whitespace().next()?;
        match word {
            "@" => Some(origin),
            _ => Name::parse(word, Some(&origin)).ok(),
        }
    }

    /// The origin set by the `$ORIGIN` in force, if any.
    fn origin_name(&self, text: &str) -> Option<Name> {
        let word = self
            .origin?
            .text(text)
            .split_whitespace()
            .nth(1)?
            .to_string();
        Name::parse(&word, None).ok()
    }

    /// The default TTL set by the `$TTL` in force, if any (in seconds).
    fn ttl_seconds(&self, text: &str) -> Option<u32> {
        self.ttl?.text(text).split_whitespace().nth(1)?.parse().ok()
    }

    /// The directives, as text to put before a chunk parsed on its own.
    fn prelude(&self, text: &str) -> String {
        let mut prelude = String::new();
        for entry in [self.origin, self.ttl].into_iter().flatten() {
            prelude.push_str(entry.text(text).trim_end());
            prelude.push('\n');
        }
        prelude
    }
}

/// A run of entries parsed together.
struct Chunk<'a> {
    origin: &'a Name,
    path: &'a Path,
    prelude: String,
    text: &'a str,
    entries: &'a [Entry],
}

impl Chunk<'_> {
    /// The chunk's text up to and including `entry`, after the prelude.
    fn up_to(&self, entry: &Entry) -> String {
        let start = self
            .entries
            .first()
            .map_or(entry.start, |first| first.start);
        format!("{}{}", self.prelude, &self.text[start..entry.end])
    }

    fn error(&self, line: Option<usize>, message: String) -> ZoneError {
        FileError::new(self.path, message).at_line(line)
    }

    /// Parses the chunk and moves its records into `zone`.
    fn add_to(&self, zone: &mut Zone) -> Result<(), ZoneError> {
        let Some(last) = self.entries.last() else {
            return Ok(());
        };
        let rrsets = check(self.origin, &self.up_to(last), self.path).map_err(|message| {
            // Report the entry at which the chunk first goes wrong, with
            // that entry's own complaint.
            match first_failing(self.entries, |entry| {
                check(self.origin, &self.up_to(entry), self.path).is_err()
            }) {
                Some(entry) => {
                    let message = check(self.origin, &self.up_to(entry), self.path)
                        .err()
                        .unwrap_or(message);
                    self.error(Some(entry.line), message)
                }
                None => self.error(None, message),
            }
        })?;
        for (key, set) in rrsets {
            let Some(owner) = WireName::from_name(&key.name) else {
                continue;
            };
            if let Some(conflict) = conflict(zone, &owner, &key) {
                // The record that meets data from an earlier chunk.
                let line = first_failing(self.entries, |entry| {
                    check(self.origin, &self.up_to(entry), self.path)
                        .is_ok_and(|parsed| parsed.contains_key(&key))
                })
                .map(|entry| entry.line);
                return Err(self.error(line, conflict));
            }
            let parts = RecordSetParts::from(set);
            for record in parts.records {
                zone.add(owner.clone(), key.record_type, record.ttl, record.data);
            }
        }
        Ok(())
    }
}

/// `text` with the bytes of `entries` turned to spaces, newlines kept.
fn blank<'a>(text: &'a str, entries: &[&Entry]) -> std::borrow::Cow<'a, str> {
    if entries.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut bytes = text.as_bytes().to_vec();
    for entry in entries {
        for byte in &mut bytes[entry.start..entry.end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Only ASCII bytes were written over whole entries.
    std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

/// Adds a record read in generic form, with the checks hickory's records
/// get in [`check`] and [`conflict`].
fn add_generic(zone: &mut Zone, record: generic::GenericRecord) -> Result<(), String> {
    let owner = WireName::from_name(&record.owner).ok_or("the owner is not a valid name")?;
    if !super::wire::is_within(owner.as_bytes(), zone.origin().as_bytes()) {
        return Err(format!(
            "{} is outside the zone {}",
            record.owner,
            zone.origin()
        ));
    }
    let key = RrKey::new(LowerName::new(&record.owner), record.record_type);
    if let Some(problem) = conflict(zone, &owner, &key) {
        return Err(problem);
    }
    zone.add(owner, record.record_type, record.ttl, record.rdata);
    Ok(())
}

/// What is wrong with adding `key`'s RRset to what `zone` holds already
/// (within one chunk, [`check`] has looked already).
fn conflict(zone: &Zone, owner_wire: &WireName, key: &RrKey) -> Option<String> {
    let node = zone.node(owner_wire.as_bytes())?;
    let owner = &key.name;
    // A signed zone's CNAME has its RRSIG and NSEC beside it (RFC 4035).
    let beside_cname = |record_type| {
        matches!(
            record_type,
            RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC
        )
    };
    match key.record_type {
        RecordType::SOA if node.rrset(RecordType::SOA).is_some() => {
            Some(format!("more than one SOA record at {owner}"))
        }
        RecordType::CNAME
            if node
                .rrsets()
                .iter()
                .any(|set| !beside_cname(set.record_type())) =>
        {
            Some(format!("{owner} has a CNAME and other data"))
        }
        other if !beside_cname(other) && node.rrset(RecordType::CNAME).is_some() => {
            Some(format!("{owner} has a CNAME and other data ({other})"))
        }
        _ => None,
    }
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

    fn lower(name: &str) -> WireName {
        WireName::from_name(&Name::from_ascii(name).unwrap()).unwrap()
    }

    /// A zone signed by BIND's dnssec-signzone, in its two layouts (NSEC
    /// with every owner written; NSEC3 with owners only on their first
    /// record), loads whole: every DNSSEC record, beside CNAMEs too.
    #[test]
    fn zones_signed_elsewhere_load_with_every_dnssec_record() {
        let origin = Name::from_ascii("signed.test.").unwrap();
        for (file, denial) in [
            ("signed.test.nsec.zone", RecordType::NSEC),
            ("signed.test.nsec3.zone", RecordType::NSEC3),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/zones")
                .join(file);
            let zone = load_zone(&origin, &path).unwrap_or_else(|error| panic!("{error}"));
            assert!(zone.is_signed(), "{file}");
            let count = |record_type| {
                zone.records()
                    .filter(|record| record.record_type() == record_type)
                    .count()
            };
            assert_eq!(count(RecordType::DNSKEY), 2, "{file}");
            assert_eq!(count(RecordType::DS), 1, "{file}");
            // The apex's SOA, NS, DNSKEY (by each key) and NSEC or
            // NSEC3PARAM.
            let apex = zone.node(zone.origin().as_bytes()).unwrap();
            assert_eq!(
                apex.rrset(RecordType::RRSIG).map(|set| set.rdatas().len()),
                Some(5),
                "{file}"
            );
            // One per authoritative name (glue below a cut has none).
            assert!(count(denial) >= 8, "{file}: one per name");
            // A transfer gives each RRSIG its RRset's TTL (A 300, the
            // denial record 60), not one TTL for the node's RRSIGs.
            let www: Vec<(RecordType, u32)> = zone
                .records()
                .filter(|record| {
                    record.name.to_ascii() == "www.signed.test."
                        && record.record_type() == RecordType::RRSIG
                })
                .filter_map(|record| {
                    Some((super::super::dnssec::covered(&record.data)?, record.ttl))
                })
                .collect();
            assert!(www.contains(&(RecordType::A, 300)), "{file}: {www:?}");
            if denial == RecordType::NSEC {
                assert!(www.contains(&(RecordType::NSEC, 60)), "{file}: {www:?}");
            }
            let alias = zone.node(lower("alias.signed.test.").as_bytes()).unwrap();
            assert!(alias.rrset(RecordType::CNAME).is_some());
            assert!(alias.rrset(RecordType::RRSIG).is_some(), "{file}");
            let txt = zone.node(lower("a.b.c.signed.test.").as_bytes()).unwrap();
            assert_eq!(
                txt.rrset(RecordType::TXT)
                    .map(|set| set.rdatas()[0].to_string()),
                Some("deep; with a semicolon".to_string())
            );
        }
    }

    #[test]
    fn loads_records_and_answers_lookups() {
        let zone = parse(ZONE).unwrap();
        assert_eq!(zone.soa().rdatas().len(), 1);
        match zone.lookup(lower("WWW.example.com.").as_bytes(), RecordType::A) {
            Lookup::Answer(set) => assert_eq!(set.rdatas().len(), 2),
            other => panic!("expected an answer, got {other:?}"),
        }
        assert!(matches!(
            zone.lookup(lower("www.example.com.").as_bytes(), RecordType::AAAA),
            Lookup::NoData
        ));
        assert!(
            matches!(
                zone.lookup(lower("b.c.example.com.").as_bytes(), RecordType::A),
                Lookup::NoData
            ),
            "empty non-terminal"
        );
        assert!(matches!(
            zone.lookup(lower("nope.example.com.").as_bytes(), RecordType::A),
            Lookup::NxDomain
        ));
        assert!(matches!(
            zone.lookup(lower("alias.example.com.").as_bytes(), RecordType::A),
            Lookup::Alias(_)
        ));
        assert!(matches!(
            zone.lookup(lower("ns.sub.example.com.").as_bytes(), RecordType::A),
            Lookup::Delegation(..)
        ));
    }

    #[test]
    fn wildcards_answer_only_below_their_closest_encloser() {
        let zone = parse(&format!("{ZONE}*.w A 192.0.2.7\nreal.w A 192.0.2.8\n")).unwrap();
        let addresses = |name: &str| match zone.lookup(lower(name).as_bytes(), RecordType::A) {
            Lookup::Answer(set) => set
                .rdatas()
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(","),
            other => format!("{other:?}"),
        };
        assert_eq!(addresses("x.w.example.com."), "192.0.2.7");
        assert_eq!(
            addresses("x.y.w.example.com."),
            "192.0.2.7",
            "closest encloser w"
        );
        assert_eq!(
            addresses("real.w.example.com."),
            "192.0.2.8",
            "existing names are not synthesised"
        );
        assert_eq!(
            addresses("x.real.w.example.com."),
            "NxDomain",
            "closest encloser real.w has no wildcard"
        );
        assert!(matches!(
            zone.lookup(lower("x.w.example.com.").as_bytes(), RecordType::AAAA),
            Lookup::NoData
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
        assert!(error.problem.contains("outside the zone"), "{error}");
    }

    #[test]
    fn rejects_cname_beside_other_data() {
        let error = parse(&format!("{ZONE}alias IN TXT \"x\"\n")).unwrap_err();
        assert_eq!(error.line, Some(11), "{error}");
        assert!(error.problem.contains("CNAME and other data"), "{error}");
    }

    /// Every name's RRsets, as text, for comparing two parses.
    fn dump(zone: &Zone) -> Vec<String> {
        let mut lines: Vec<String> = zone
            .nodes()
            .flat_map(|(name, node)| {
                node.rrsets().iter().map(move |set| {
                    let mut data: Vec<String> =
                        set.rdatas().iter().map(|rdata| rdata.to_string()).collect();
                    data.sort();
                    format!(
                        "{name} {} {} {}",
                        set.ttl(),
                        set.record_type(),
                        data.join(" | ")
                    )
                })
            })
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn chunked_parses_equal_the_whole() {
        let text = format!(
            "{ZONE}$TTL 600\nlate A 192.0.2.20\n  A 192.0.2.21\n$ORIGIN sub2.example.com.\nx A 192.0.2.30\n\
             www.example.com. A 192.0.2.3\n"
        );
        let origin = Name::from_ascii("example.com.").unwrap();
        let whole = parse_in_chunks(&origin, &text, Path::new("z"), usize::MAX).unwrap();
        assert!(
            dump(&whole).contains(&"x.sub2.example.com. 600 A 192.0.2.30".to_string()),
            "{:?}",
            dump(&whole)
        );
        for chunk in 1..6 {
            let chunked = parse_in_chunks(&origin, &text, Path::new("z"), chunk).unwrap();
            assert_eq!(dump(&chunked), dump(&whole), "chunks of {chunk}");
        }
    }

    #[test]
    fn chunked_errors_name_the_line() {
        let origin = Name::from_ascii("example.com.").unwrap();
        let bad = format!("{ZONE}ok A 192.0.2.1\nbad A 192.0.2.999\n");
        let error = parse_in_chunks(&origin, &bad, Path::new("z"), 2).unwrap_err();
        assert_eq!(error.line, Some(12), "{error}");
        // The CNAME and the other data at its name land in different chunks.
        let conflict =
            format!("{ZONE}a1 A 192.0.2.1\na2 A 192.0.2.1\na3 A 192.0.2.1\nalias TXT \"x\"\n");
        let error = parse_in_chunks(&origin, &conflict, Path::new("z"), 2).unwrap_err();
        assert_eq!(error.line, Some(14), "{error}");
        assert!(error.problem.contains("CNAME and other data"), "{error}");
    }

    #[test]
    fn includes_are_read_relative_to_the_file() {
        let dir = std::env::temp_dir().join(format!("dnslb-include-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts.inc"), "included A 192.0.2.77\n").unwrap();
        let main = dir.join("example.com.zone");
        std::fs::write(
            &main,
            format!("{ZONE}$INCLUDE hosts.inc\nafter A 192.0.2.78\n"),
        )
        .unwrap();
        let zone = load_zone(&Name::from_ascii("example.com.").unwrap(), &main).unwrap();
        for name in ["included.example.com.", "after.example.com."] {
            assert!(
                matches!(
                    zone.lookup(lower(name).as_bytes(), RecordType::A),
                    Lookup::Answer(_)
                ),
                "{name}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn requires_an_soa() {
        let error = parse("www 300 IN A 192.0.2.1\n").unwrap_err();
        assert_eq!(error.line, None);
        assert!(error.problem.contains("no SOA"), "{error}");
    }
}
