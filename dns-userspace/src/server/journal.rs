//! The versions of each transferable zone served before the current one,
//! so that IXFR (RFC 1995) sends a secondary only what changed since its
//! version: one condensed difference, as §6 allows.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use hickory_proto::rr::{Record, RecordType};

use crate::zone::{Catalog, WireName, Zone};

/// Earlier versions kept per zone; a secondary further behind gets the
/// whole zone.
pub const KEPT_VERSIONS: usize = 16;

#[derive(Debug, Default)]
pub struct Journal {
    versions: HashMap<WireName, VecDeque<Arc<Zone>>>,
}

impl Journal {
    /// Notes that `new` replaced `old`: each zone of `keep` whose serial
    /// changed keeps the version it had; zones no longer served, or no
    /// longer kept, are forgotten.
    pub fn record(&mut self, old: &Catalog, new: &Catalog, keep: impl Fn(&WireName) -> bool) {
        for zone in new.zones() {
            let origin = zone.origin();
            let Some(before) = old.get(origin) else {
                continue;
            };
            if before.serial() == zone.serial() || !keep(origin) {
                continue;
            }
            let versions = self.versions.entry(origin.clone()).or_default();
            versions.push_back(before.clone());
            if versions.len() > KEPT_VERSIONS {
                versions.pop_front();
            }
        }
        self.versions
            .retain(|origin, _| new.get(origin).is_some() && keep(origin));
    }

    /// The version of `origin` that had `serial`, if it is kept.
    pub fn version(&self, origin: &WireName, serial: u32) -> Option<Arc<Zone>> {
        self.versions
            .get(origin)?
            .iter()
            .rev()
            .find(|zone| zone.serial() == serial)
            .cloned()
    }
}

/// Every record of `zone` but its SOA, in zone order.
pub fn records_but_soa(zone: &Zone) -> Vec<Record> {
    zone.records()
        .filter(|r| r.record_type() != RecordType::SOA || r.name != *zone.origin_name())
        .collect()
}

/// What going from `from` to `to` removes and adds (SOAs aside); a record
/// whose TTL changed is removed and added again.
pub fn difference(from: &Zone, to: &Zone) -> (Vec<Record>, Vec<Record>) {
    let (old, new) = (records_but_soa(from), records_but_soa(to));
    let key = |record: &Record| record.to_string().to_ascii_lowercase();
    let old_keys: HashSet<String> = old.iter().map(key).collect();
    let new_keys: HashSet<String> = new.iter().map(key).collect();
    let removed = old
        .into_iter()
        .filter(|r| !new_keys.contains(&key(r)))
        .collect();
    let added = new
        .into_iter()
        .filter(|r| !old_keys.contains(&key(r)))
        .collect();
    (removed, added)
}
