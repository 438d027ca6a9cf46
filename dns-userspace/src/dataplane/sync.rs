//! Which of a zone's records the kernel answers, as map entries.

use std::net::IpAddr;

use dns_common::{HotName, SET_SIGNED};
use hickory_proto::{
    rr::{Name, RData, RecordType},
    serialize::binary::BinEncodable,
};

use super::{
    Dataplane, DataplaneError, HotAnswer, HotError, HotSignatures, HotType, HotValue, RrsetSigner,
    Rrsigs, signed::unix_now,
};
use crate::zone::{Catalog, Node, WireName, Zone};

/// The signers of the zones signed online, by origin.
pub type OnlineSigners<'a> = &'a dyn Fn(&WireName) -> Option<&'a dyn RrsetSigner>;

/// A zone signed elsewhere: its hot RRsets' RRSIGs are the zone file's.
struct Presigned<'a>(&'a Zone);

impl RrsetSigner for Presigned<'_> {
    /// Sent until the first of them expires, never after: new ones come
    /// with the next load of the zone file.
    fn rrsigs(
        &self,
        owner: &HotName,
        hot_type: HotType,
        ttl: u32,
        _addrs: &[IpAddr],
    ) -> Option<Rrsigs> {
        let rrsigs = self.0.signatures(owner.wire(), hot_type.record_type());
        let data = rrsigs
            .iter()
            .map(|rrsig| rrsig.to_bytes().ok())
            .collect::<Option<Vec<_>>>()?;
        Rrsigs::encode(data.iter().map(Vec::as_slice), ttl, |expiration| {
            (expiration, u64::MAX)
        })
    }
}

/// Who signs `zone`'s hot RRsets: its online signer, or the zone file
/// itself; `None` for an unsigned zone.
fn zone_signer<'z, 's>(zone: &'z Zone, online: OnlineSigners<'s>) -> Option<ZoneSigning<'z, 's>> {
    if zone.is_online() {
        online(zone.origin()).map(ZoneSigning::Online)
    } else if zone.is_presigned() {
        Some(ZoneSigning::Presigned(Presigned(zone)))
    } else {
        None
    }
}

enum ZoneSigning<'z, 's> {
    Online(&'s dyn RrsetSigner),
    Presigned(Presigned<'z>),
}

impl ZoneSigning<'_, '_> {
    fn sign(&self, name: &HotName, value: &HotValue) -> Option<HotSignatures> {
        match self {
            ZoneSigning::Online(signer) => HotSignatures::sign(name, value, *signer),
            ZoneSigning::Presigned(zone) => HotSignatures::sign(name, value, zone),
        }
    }
}

/// A name the kernel cannot answer, and why.
#[derive(Debug)]
pub struct Skipped {
    pub name: Name,
    pub reason: SkipReason,
}

#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    #[error(transparent)]
    Rrset(#[from] HotError),
    #[error(transparent)]
    Kernel(DataplaneError),
}

/// The kernel's record types, as zone record types.
const HOT_TYPES: [(RecordType, HotType); 2] = [
    (RecordType::A, HotType::A),
    (RecordType::AAAA, HotType::Aaaa),
];

/// The kernel entries for `zone`: every A and AAAA RRset that is
/// authoritative data (not glue below a delegation), answered round robin,
/// marked as signed in a zone with DNSSEC records. An iterator, so a
/// million entries stream into the map rather than pile up in memory.
pub fn hot_entries(zone: &Zone) -> impl Iterator<Item = Result<(HotName, HotValue), Skipped>> + '_ {
    zone.nodes().flat_map(move |(name, node)| {
        HOT_TYPES
            .into_iter()
            .filter_map(move |(record_type, hot_type)| {
                hot_entry(zone, name, node, record_type, hot_type)
            })
    })
}

/// The kernel entry for one node's RRset of `record_type`, if the kernel
/// may answer it.
fn hot_entry(
    zone: &Zone,
    name: &WireName,
    node: &Node,
    record_type: RecordType,
    hot_type: HotType,
) -> Option<Result<(HotName, HotValue), Skipped>> {
    let set = node.rrset(record_type)?;
    if zone.delegation(name.as_bytes()).is_some() {
        return None;
    }
    let addrs: Vec<IpAddr> = set
        .rdatas()
        .iter()
        .filter_map(|rdata| match rdata {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    let answer = HotAnswer::RoundRobin {
        ttl: set.ttl(),
        addrs,
    };
    // A name the zone parser accepted always is a valid key.
    let key = HotName::from_wire(name.as_bytes())?;
    let flags = if zone.is_signed() { SET_SIGNED } else { 0 };
    Some(match answer.encode(hot_type) {
        Ok(value) => Ok((key, value.with_flags(flags))),
        Err(reason) => Err(Skipped {
            name: name.to_name(),
            reason: reason.into(),
        }),
    })
}

/// Whether `catalog` has a kernel entry of `hot_type` for the lowercase
/// wire name `name`.
fn is_hot(catalog: &Catalog, name: &[u8], hot_type: HotType) -> bool {
    let Some(zone) = catalog.find(name) else {
        return false;
    };
    let Some((record_type, _)) = HOT_TYPES.into_iter().find(|(_, t)| *t == hot_type) else {
        return false;
    };
    let node = zone.nodes_get(name);
    node.and_then(|(owner, node)| hot_entry(zone, owner, node, record_type, hot_type))
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
/// removed. Nothing that stays hot is ever missing from the map. Names and
/// types for which `steered` is true belong to a policy-file service and
/// are left to it. A name whose digest another name holds is skipped: the daemon
/// answers it. A signed zone's entries go with their signatures, from
/// `online` for the zones signed online.
pub fn sync_hot(
    dataplane: &mut Dataplane,
    (old, new): (Option<&Catalog>, &Catalog),
    steered: &dyn Fn(&[u8], HotType) -> bool,
    online: OnlineSigners<'_>,
) -> Result<SyncReport, DataplaneError> {
    let mut report = SyncReport::default();
    let now = unix_now();
    for zone in new.zones() {
        let signing = zone_signer(zone, online);
        for entry in hot_entries(zone) {
            match entry {
                Ok((name, value)) if steered(name.wire(), value.hot_type()) => {}
                Ok((name, value)) => match write(dataplane, (&name, &value), signing.as_ref(), now)
                {
                    Ok(()) => report.written += 1,
                    Err(collision @ DataplaneError::Collision { .. }) => {
                        report.skipped.push(Skipped {
                            name: WireName::from(name.wire()).to_name(),
                            reason: SkipReason::Kernel(collision),
                        })
                    }
                    Err(error) => return Err(error),
                },
                Err(skip) => report.skipped.push(skip),
            }
        }
    }
    for zone in old.into_iter().flat_map(|old| old.zones()) {
        for (name, value) in hot_entries(zone).flatten() {
            let hot_type = value.hot_type();
            if !is_hot(new, name.wire(), hot_type) && !steered(name.wire(), hot_type) {
                dataplane.remove_hot(&name, hot_type)?;
                report.removed += 1;
            }
        }
    }
    Ok(report)
}

/// Writes one zone entry, signed by `signing` when the zone is signed.
/// An entry of a zone signed online that the kernel holds as it is, its
/// signatures not yet due at `now`, is left alone: a reload of a large
/// signed zone signs nothing again. (A zone signed elsewhere is written
/// again: a new file brings new signatures for the same records.)
fn write(
    dataplane: &mut Dataplane,
    (name, value): (&HotName, &HotValue),
    signing: Option<&ZoneSigning<'_, '_>>,
    now: u64,
) -> Result<(), DataplaneError> {
    if matches!(signing, Some(ZoneSigning::Online(_))) && dataplane.holds_signed(name, value, now) {
        return Ok(());
    }
    let signatures = signing.and_then(|signing| signing.sign(name, value));
    dataplane.set_hot_signed(name, value, signatures.as_ref())
}

/// Writes again, with new signatures, the entries of `catalog`'s signed
/// zones whose signatures are due at `now`, at most `limit` of them (the
/// caller holds the maps meanwhile; the rest wait for the next call);
/// returns how many.
pub fn renew_signatures(
    dataplane: &mut Dataplane,
    catalog: &Catalog,
    steered: &dyn Fn(&[u8], HotType) -> bool,
    (online, now): (OnlineSigners<'_>, u64),
    limit: usize,
) -> Result<usize, DataplaneError> {
    let mut renewed = 0;
    for zone in catalog.zones() {
        let Some(signing) = zone_signer(zone, online) else {
            continue;
        };
        for (name, value) in hot_entries(zone).flatten() {
            let hot_type = value.hot_type();
            if steered(name.wire(), hot_type)
                || !dataplane.name_signatures_due(&name, hot_type, now)
            {
                continue;
            }
            if renewed == limit {
                return Ok(renewed);
            }
            write(dataplane, (&name, &value), Some(&signing), now)?;
            renewed += 1;
        }
    }
    Ok(renewed)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::zone::parse_zone;

    #[test]
    fn only_authoritative_address_rrsets_are_hot() {
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
            .map(|(key, value)| {
                let endpoints = match value {
                    HotValue::A(set) => set.endpoints,
                    HotValue::Aaaa(set) => set.endpoints,
                };
                (key.wire()[..5].to_vec(), value.hot_type(), endpoints)
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0).then((a.1 as u8).cmp(&(b.1 as u8))));
        assert_eq!(
            names,
            vec![
                (b"\x02ns\x07e".to_vec(), HotType::A, 1),
                (b"\x03www\x07".to_vec(), HotType::A, 2),
                (b"\x04mail".to_vec(), HotType::Aaaa, 1),
            ]
        );
    }
}
