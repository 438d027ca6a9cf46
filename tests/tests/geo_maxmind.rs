//! Geolocation and geoproximity from a MaxMind database: a small one built
//! by the test, read with the `maxminddb` crate as a GeoLite2 City would be.

use std::net::{IpAddr, Ipv4Addr};

use dnslb::{
    config::load_config,
    policy::{AllUp, ClientNet, GeoDb},
};
use dnslb_tests::mmdb::{Place, write};

fn places() -> Vec<Place> {
    vec![
        Place {
            network: Ipv4Addr::new(198, 18, 1, 0),
            prefix: 24,
            continent: "EU",
            country: "DE",
            subdivision: Some("BE"),
            latitude: 52.52,
            longitude: 13.40,
        },
        Place {
            network: Ipv4Addr::new(198, 18, 2, 0),
            prefix: 24,
            continent: "NA",
            country: "US",
            subdivision: Some("VA"),
            latitude: 38.90,
            longitude: -77.04,
        },
        Place {
            network: Ipv4Addr::new(198, 18, 3, 0),
            prefix: 25,
            continent: "EU",
            country: "FR",
            subdivision: None,
            latitude: 48.86,
            longitude: 2.35,
        },
    ]
}

const POLICY: &str = r#"
[geo]
database = "geo.mmdb"
[pool.berlin]
endpoints = ["198.18.10.1"]
[pool.eu]
endpoints = ["198.18.11.1"]
[pool.us]
endpoints = ["198.18.20.1"]
[pool.rest]
endpoints = ["198.18.30.1"]

[service.geo]
name = "geo.example.com."
[service.geo.policy]
kind = "geolocation"
branches = [
  { country = "DE", subdivision = "BE", pool = "berlin" },
  { continent = "EU", pool = "eu" },
  { country = "US", pool = "us" },
  { default = true, pool = "rest" },
]

[service.near]
name = "near.example.com."
[service.near.policy]
kind = "geoproximity"
regions = [
  { name = "frankfurt", latitude = 50.1, longitude = 8.7, pool = "eu" },
  { name = "virginia", latitude = 38.9, longitude = -77.0, pool = "us" },
]

[service.biased]
name = "biased.example.com."
[service.biased.policy]
kind = "geoproximity"
regions = [
  { name = "frankfurt", latitude = 50.1, longitude = 8.7, pool = "eu" },
  { name = "virginia", latitude = 38.9, longitude = -77.0, bias = 99, pool = "us" },
]
"#;

#[test]
fn a_maxmind_database_places_clients_for_geo_policies() {
    let dir = std::env::temp_dir().join(format!("dnslb-mmdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("geo.mmdb"), write(&places())).unwrap();

    let db = GeoDb::open_maxmind(&dir.join("geo.mmdb")).expect("readable by maxminddb");
    assert_eq!(db.networks.len(), 3);
    let berlin = db.locate("198.18.1.77".parse().unwrap()).unwrap();
    assert_eq!(
        (
            berlin.continent.as_deref(),
            berlin.country.as_deref(),
            berlin.subdivision.as_deref()
        ),
        (Some("EU"), Some("DE"), Some("BE"))
    );
    assert_eq!(berlin.coordinates, Some((52.52, 13.40)));
    assert!(
        db.locate("198.18.3.200".parse().unwrap()).is_none(),
        "outside the /25"
    );

    std::fs::write(dir.join("dnslb.toml"), POLICY).unwrap();
    let config = load_config(&dir.join("dnslb.toml"), None).unwrap_or_else(|e| panic!("{e}"));
    let answer = |label: &str, client: &str| -> Vec<IpAddr> {
        let service = config.services.iter().find(|s| s.label == label).unwrap();
        let client = ClientNet::host(client.parse().unwrap());
        let draw = service.draw(&config.pools, &AllUp, Some(client));
        draw.choose(0, 0).iter().map(|d| d.addr).collect()
    };
    let ip = |text: &str| -> Vec<IpAddr> { vec![text.parse().unwrap()] };
    assert_eq!(
        answer("geo", "198.18.1.9"),
        ip("198.18.10.1"),
        "subdivision"
    );
    assert_eq!(answer("geo", "198.18.3.9"), ip("198.18.11.1"), "continent");
    assert_eq!(answer("geo", "198.18.2.9"), ip("198.18.20.1"), "country");
    assert_eq!(answer("geo", "192.0.2.1"), ip("198.18.30.1"), "default");
    assert_eq!(
        answer("near", "198.18.3.9"),
        ip("198.18.11.1"),
        "Paris is nearer Frankfurt"
    );
    assert_eq!(answer("near", "198.18.2.9"), ip("198.18.20.1"));
    // A bias of 99 scales Virginia's distances by 0.01: Paris goes there.
    assert_eq!(answer("biased", "198.18.3.9"), ip("198.18.20.1"));
}
