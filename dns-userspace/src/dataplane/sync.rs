//! Which of a zone's records the kernel answers, as map entries.

use std::net::Ipv4Addr;

use dns_common::{HotA, HotName};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Dataplane, DataplaneError, HotAnswer, HotError};
use crate::zone::{Catalog, Node, WireName, Zone};

/// A name the kernel cannot answer, and why.
#[derive(Debug)]
pub struct Skipped {
    pub name: Name,
    pub reason: HotError,
}

/// The kernel entries for `zone`: every A RRset that is authoritative data
/// (not glue below a delegation), answered round robin. An iterator, so a
/// million entries stream into the map rather than pile up in memory.
pub fn hot_entries(zone: &Zone) -> impl Iterator<Item = Result<(HotName, HotA), Skipped>> + '_ {
    zone.nodes()
        .filter_map(|(name, node)| hot_entry(zone, name, node))
}

/// The kernel entry for one node, if it has an A RRset the kernel may answer.
fn hot_entry(
    zone: &Zone,
    name: &WireName,
    node: &Node,
) -> Option<Result<(HotName, HotA), Skipped>> {
    let set = node.rrset(RecordType::A)?;
    if zone.delegation(name.as_bytes()).is_some() {
        return None;
    }
    let addrs: Vec<Ipv4Addr> = set
        .rdatas()
        .iter()
        .filter_map(|rdata| match rdata {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    let answer = HotAnswer::RoundRobin {
        ttl: set.ttl(),
        addrs,
    };
    // A name the zone parser accepted always is a valid key.
    let key = HotName::from_wire(name.as_bytes())?;
    Some(match answer.encode() {
        Ok(value) => Ok((key, value)),
        Err(reason) => Err(Skipped {
            name: name.to_name(),
            reason,
        }),
    })
}

/// Whether `catalog` has a kernel entry for the lowercase wire name `name`.
fn is_hot(catalog: &Catalog, name: &[u8]) -> bool {
    let Some(zone) = catalog.find(name) else {
        return false;
    };
    let node = zone.nodes_get(name);
    node.and_then(|(owner, node)| hot_entry(zone, owner, node))
        .is_some_and(|entry| entry.is_ok())
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub written: usize,
    pub removed: usize,
    pub skipped: Vec<Skipped>,
}

/// Makes the kernel's hot names those of `new`: every entry is written
/// (a whole value at a time, so a name changes from one answer to the next
/// with nothing in between), then the names `old` had and `new` has not are
/// removed. Nothing that stays hot is ever missing from the map. Names for
/// which `steered` is true belong to a policy-file service and are left to
/// it.
pub fn sync_hot(
    dataplane: &mut Dataplane,
    old: Option<&Catalog>,
    new: &Catalog,
    steered: &dyn Fn(&[u8]) -> bool,
) -> Result<SyncReport, DataplaneError> {
    let mut report = SyncReport::default();
    for zone in new.zones() {
        for entry in hot_entries(zone) {
            match entry {
                Ok((name, _)) if steered(name.wire()) => {}
                Ok((name, value)) => {
                    dataplane.set_hot_a(&name, &value)?;
                    report.written += 1;
                }
                Err(skip) => report.skipped.push(skip),
            }
        }
    }
    for zone in old.into_iter().flat_map(|old| old.zones()) {
        for (name, _) in hot_entries(zone).flatten() {
            if !is_hot(new, name.wire()) && !steered(name.wire()) {
                dataplane.remove_hot_a(&name)?;
                report.removed += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::zone::parse_zone;

    #[test]
    fn only_authoritative_a_rrsets_are_hot() {
        let text = "$TTL 60\n@ SOA ns host 1 2 3 4 5\n@ NS ns\nns A 192.0.2.53\nWWW A 192.0.2.1\n A 192.0.2.2\n\
                    mail AAAA 2001:db8::1\nsub NS ns.sub\nns.sub A 192.0.2.9\n";
        let zone = parse_zone(
            &Name::from_ascii("example.com.").unwrap(),
            text,
            Path::new("t.zone"),
        )
        .unwrap();
        let entries: Vec<_> = hot_entries(&zone).collect::<Result<_, _>>().unwrap();
        let mut names: Vec<_> = entries
            .iter()
            .map(|(key, value)| (key.key::<32>().wire[..5].to_vec(), value.endpoints))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![(b"\x02ns\x07e".to_vec(), 1), (b"\x03www\x07".to_vec(), 2)]
        );
    }
}
