//! SOA serial discipline: a secondary asks for a zone again only when the
//! primary's serial is above its own (RFC 1982 serial arithmetic), so a
//! zone whose data changed must carry a higher serial, or the change never
//! reaches the secondaries.

use hickory_proto::rr::rdata::SOA;

use super::{
    Zone,
    entries::{Entry, entries, words},
};

/// What a zone's serial must do when its file changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SerialRule {
    /// The file's serial is served: a change must raise it, else it is
    /// refused.
    #[default]
    File,
    /// dnslb raises the serial of a changed zone itself (the served one
    /// plus one) and writes it into the file.
    Auto,
}

/// What a new version of a zone does to the served one's serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialChange {
    /// Neither the data nor the serial changed: nothing to do.
    Unchanged,
    /// The serial is above the old one: secondaries will ask for it.
    Raised,
    /// The data changed and the serial did not rise, or the serial went
    /// back: secondaries would not see the new version.
    NotRaised,
}

/// Whether `new` is above `old` in RFC 1982 serial arithmetic (32 bits).
pub fn serial_above(new: u32, old: u32) -> bool {
    new != old && new.wrapping_sub(old) < 1 << 31
}

/// How `new` stands against `old`, the version served now.
pub fn serial_change(old: &Zone, new: &Zone) -> SerialChange {
    if serial_above(new.serial(), old.serial()) {
        SerialChange::Raised
    } else if new.serial() == old.serial() && new.same_data(old) {
        SerialChange::Unchanged
    } else {
        SerialChange::NotRaised
    }
}

/// Whether two SOAs are the same but for the serial.
pub(super) fn same_but_serial(a: &SOA, b: &SOA) -> bool {
    a.mname == b.mname
        && a.rname == b.rname
        && a.refresh == b.refresh
        && a.retry == b.retry
        && a.expire == b.expire
        && a.minimum == b.minimum
}

/// `text` (a master file) with its SOA's serial replaced by `serial`;
/// `None` when the file has no SOA record of its own to edit (it comes
/// from an `$INCLUDE`). Comments, layout and every other byte stay.
pub fn with_serial(text: &str, serial: u32) -> Option<String> {
    let (start, end) = entries(text)
        .iter()
        .find_map(|entry| soa_serial_at(text, entry))?;
    Some(format!("{}{serial}{}", &text[..start], &text[end..]))
}

/// The byte range of the serial in `entry`, if it is an SOA record: the
/// third field after the type (MNAME, RNAME, SERIAL).
fn soa_serial_at(text: &str, entry: &Entry) -> Option<(usize, usize)> {
    let words = words(entry.text(text));
    let soa = words
        .iter()
        .position(|word| word.text.eq_ignore_ascii_case("SOA"))?;
    let serial = words.get(soa + 3)?;
    serial.text.bytes().all(|b| b.is_ascii_digit()).then_some((
        entry.start + serial.range.start,
        entry.start + serial.range.end,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::zone::parse_zone;

    fn zone(text: &str) -> Zone {
        parse_zone(
            &Name::from_ascii("example.").unwrap(),
            text,
            Path::new("x.zone"),
        )
        .unwrap()
    }

    const ZONE: &str = "$TTL 60\n@ IN SOA ns host. (\n  2026120601 ; serial\n  3600 600 86400 60 )\n@ NS ns\nns A 198.18.0.1\n";

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(serial_above(2, 1));
        assert!(!serial_above(1, 1));
        assert!(!serial_above(1, 2));
        assert!(serial_above(0, u32::MAX), "wraps past 2^32");
        assert!(
            !serial_above(1 << 31, 0),
            "2^31 ahead is undefined: not above"
        );
    }

    #[test]
    fn a_change_is_judged_by_data_and_serial() {
        let old = zone(ZONE);
        assert_eq!(serial_change(&old, &zone(ZONE)), SerialChange::Unchanged);
        let changed = ZONE.replace("198.18.0.1", "198.18.0.2");
        assert_eq!(
            serial_change(&old, &zone(&changed)),
            SerialChange::NotRaised
        );
        let raised = changed.replace("2026120601", "2026120602");
        assert_eq!(serial_change(&old, &zone(&raised)), SerialChange::Raised);
        let lower = ZONE.replace("2026120601", "2026120600");
        assert_eq!(serial_change(&old, &zone(&lower)), SerialChange::NotRaised);
        let timers = ZONE.replace("86400", "86401");
        assert_eq!(serial_change(&old, &zone(&timers)), SerialChange::NotRaised);
        let ttl = ZONE.replace("ns A", "ns 30 A");
        assert_eq!(serial_change(&old, &zone(&ttl)), SerialChange::NotRaised);
    }

    #[test]
    fn the_serial_is_rewritten_in_place() {
        let text = with_serial(ZONE, 2026120602).unwrap();
        assert_eq!(text, ZONE.replace("2026120601", "2026120602"));
        assert_eq!(zone(&text).serial(), 2026120602);
        let one_line = "@ 60 IN SOA ns.example. h.example. 7 3600 600 86400 60 ; the apex\n";
        assert_eq!(
            with_serial(one_line, 8).unwrap(),
            one_line.replace(" 7 ", " 8 ")
        );
        assert_eq!(with_serial("$INCLUDE soa.zone\n", 8), None);
    }
}
