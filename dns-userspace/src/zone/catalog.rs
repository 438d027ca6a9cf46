//! The set of zones served, and which one answers a name.

use std::{collections::HashMap, sync::Arc};

use super::{WireName, Zone, wire};

/// All zones, keyed by origin. Cheap to clone: zones are shared.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    zones: HashMap<WireName, Arc<Zone>>,
}

impl Catalog {
    /// Adds `zone`, replacing any zone with the same origin.
    pub fn insert(&mut self, zone: Zone) {
        self.zones.insert(zone.origin().clone(), Arc::new(zone));
    }

    /// Stops serving the zone at `origin`, returning it.
    pub fn remove(&mut self, origin: &WireName) -> Option<Arc<Zone>> {
        self.zones.remove(origin)
    }

    /// The zone whose origin is `origin`.
    pub fn get(&self, origin: &WireName) -> Option<&Arc<Zone>> {
        self.zones.get(origin)
    }

    /// The zone with the longest origin that contains `name` (lowercase
    /// wire form).
    pub fn find(&self, name: &[u8]) -> Option<&Arc<Zone>> {
        let mut candidate = Some(name);
        while let Some(suffix) = candidate {
            if let Some(zone) = self.zones.get(suffix) {
                return Some(zone);
            }
            candidate = wire::parent(suffix);
        }
        None
    }

    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::zone::parse_zone;

    fn zone(origin: &str) -> Zone {
        let text = "@ 60 IN SOA ns host 1 2 3 4 5\n";
        parse_zone(
            &Name::from_ascii(origin).unwrap(),
            text,
            Path::new("test.zone"),
        )
        .unwrap()
    }

    #[test]
    fn longest_origin_wins() {
        let mut catalog = Catalog::default();
        catalog.insert(zone("example.com."));
        catalog.insert(zone("sub.example.com."));
        let find = |name: &str| {
            catalog
                .find(
                    WireName::from_name(&Name::from_ascii(name).unwrap())
                        .unwrap()
                        .as_bytes(),
                )
                .map(|zone| zone.origin_name().to_string())
        };
        assert_eq!(
            find("a.sub.example.com.").as_deref(),
            Some("sub.example.com.")
        );
        assert_eq!(find("www.example.com.").as_deref(), Some("example.com."));
        assert_eq!(find("example.org."), None);
    }
}
