//! Where clients are: every network of a geolocation database with its
//! continent, country, subdivision and coordinates.
//!
//! Read once at load into a list, because policies are compiled by walking
//! every network (each becomes a kernel prefix), not by looking addresses up.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use maxminddb::geoip2;

use super::client::{ClientNet, parse_network};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Location {
    pub continent: Option<String>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
    /// Latitude and longitude in degrees, where the data has them.
    pub coordinates: Option<(f64, f64)>,
}

#[derive(Clone, Debug, Default)]
pub struct GeoDb {
    pub networks: Vec<(ClientNet, Location)>,
}

impl GeoDb {
    /// Reads a MaxMind database (GeoIP2/GeoLite2 City or Country layout).
    pub fn open_maxmind(path: &Path) -> Result<GeoDb, String> {
        let shown = path.display();
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|error| format!("{shown}: not a readable MaxMind database: {error}"))?;
        let unspecified: IpAddr = if reader.metadata.ip_version == 6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let everything = ipnetwork::IpNetwork::new(unspecified, 0)
            .map_err(|error| format!("{shown}: {error}"))?;
        let mut networks = Vec::new();
        let within = reader
            .within::<geoip2::City>(everything)
            .map_err(|error| format!("{shown}: {error}"))?;
        for item in within {
            let item = item.map_err(|error| format!("{shown}: {error}"))?;
            let city = item.info;
            let location = Location {
                continent: city.continent.and_then(|c| c.code).map(str::to_owned),
                country: city.country.and_then(|c| c.iso_code).map(str::to_owned),
                subdivision: city
                    .subdivisions
                    .and_then(|s| s.into_iter().next())
                    .and_then(|s| s.iso_code)
                    .map(str::to_owned),
                coordinates: city
                    .location
                    .and_then(|l| Some((l.latitude?, l.longitude?))),
            };
            let network = ClientNet::new(item.ip_net.network(), item.ip_net.prefix());
            networks.push((network, location));
        }
        Ok(GeoDb { networks })
    }

    /// Reads `network,continent,country,subdivision,latitude,longitude`
    /// lines (later fields may be empty or left off; `#` starts a comment;
    /// a first line starting with `network` is a header).
    pub fn parse_csv(path: &Path, text: &str) -> Result<GeoDb, String> {
        let mut networks = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || (number == 0 && line.starts_with("network")) {
                continue;
            }
            let at = |problem: String| format!("{}:{}: {problem}", path.display(), number + 1);
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let network = parse_network(fields[0]).map_err(at)?;
            let text_field = |i: usize| {
                fields
                    .get(i)
                    .filter(|f| !f.is_empty())
                    .map(|f| f.to_ascii_uppercase())
            };
            let number_field = |i: usize| -> Result<Option<f64>, String> {
                match fields.get(i).filter(|f| !f.is_empty()) {
                    Some(text) => text
                        .parse()
                        .map(Some)
                        .map_err(|_| at(format!("`{text}` is not a coordinate"))),
                    None => Ok(None),
                }
            };
            let coordinates = match (number_field(4)?, number_field(5)?) {
                (Some(lat), Some(lon)) => Some((lat, lon)),
                (None, None) => None,
                _ => return Err(at("give both latitude and longitude, or neither".into())),
            };
            networks.push((
                network,
                Location {
                    continent: text_field(1),
                    country: text_field(2),
                    subdivision: text_field(3),
                    coordinates,
                },
            ));
        }
        Ok(GeoDb { networks })
    }

    /// The location of the most specific network holding `addr`.
    pub fn locate(&self, addr: IpAddr) -> Option<&Location> {
        let client = ClientNet::host(addr);
        self.networks
            .iter()
            .filter(|(network, _)| network.contains(client))
            .max_by_key(|(network, _)| network.prefix_len())
            .map(|(_, location)| location)
    }
}

/// Great-circle distance in kilometres.
pub fn distance_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_with_errors_naming_the_line() {
        let text = "network,continent,country,subdivision,latitude,longitude\n\
                    198.18.1.0/24,eu,de,be,52.5,13.4\n198.18.2.0/24,NA,US\n";
        let db = GeoDb::parse_csv(Path::new("geo.csv"), text).unwrap();
        assert_eq!(db.networks.len(), 2);
        let berlin = db.locate("198.18.1.9".parse().unwrap()).unwrap();
        assert_eq!(berlin.country.as_deref(), Some("DE"));
        assert_eq!(berlin.subdivision.as_deref(), Some("BE"));
        assert_eq!(berlin.coordinates, Some((52.5, 13.4)));
        assert_eq!(
            db.locate("198.18.2.1".parse().unwrap())
                .unwrap()
                .coordinates,
            None
        );

        let error =
            GeoDb::parse_csv(Path::new("geo.csv"), "198.18.1.0/24,EU\nnope,EU\n").unwrap_err();
        assert!(error.starts_with("geo.csv:2: "), "{error}");
        let error = GeoDb::parse_csv(Path::new("g.csv"), "198.18.1.0/24,EU,DE,,52\n").unwrap_err();
        assert!(error.contains("g.csv:1: give both"), "{error}");
    }

    #[test]
    fn distances() {
        let berlin = (52.52, 13.40);
        let paris = (48.86, 2.35);
        let km = distance_km(berlin, paris);
        assert!((870.0..890.0).contains(&km), "{km}");
    }
}
