//! A writer for small MaxMind DB files (format 2.0), so that tests can give
//! the daemon a geolocation database of their own: IPv4 only, 32-bit
//! records, City-shaped data (continent, country, subdivision, location).
//! See <https://maxmind.github.io/MaxMind-DB/> for the format.

use std::net::Ipv4Addr;

/// One network and where it is.
pub struct Place {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub continent: &'static str,
    pub country: &'static str,
    pub subdivision: Option<&'static str>,
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(u32),
    Data(u32),
}

/// The database bytes for `places`.
pub fn write(places: &[Place]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for place in places {
        let offset = data.len() as u32;
        encode_city(&mut data, place);
        let bits = u32::from(place.network);
        let mut node = 0usize;
        for depth in 0..place.prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == place.prefix {
                nodes[node][bit] = Record::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Record::Node(next) => next as usize,
                _ => {
                    nodes.push([Record::Empty; 2]);
                    let next = nodes.len() - 1;
                    nodes[node][bit] = Record::Node(next as u32);
                    next
                }
            };
        }
    }
    let node_count = nodes.len() as u32;
    let mut out = Vec::new();
    for node in &nodes {
        for record in node {
            let value = match *record {
                Record::Empty => node_count,
                Record::Node(next) => next,
                // Data pointers count from the end of the tree, past the
                // 16-byte separator.
                Record::Data(offset) => node_count + 16 + offset,
            };
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "node_count");
    uint(&mut out, 6, u64::from(node_count));
    string(&mut out, "record_size");
    uint(&mut out, 5, 32);
    string(&mut out, "ip_version");
    uint(&mut out, 5, 4);
    string(&mut out, "database_type");
    string(&mut out, "dnslb-test-City");
    string(&mut out, "languages");
    out.extend_from_slice(&[0x01, 0x04]); // array of 1 (extended type 11)
    string(&mut out, "en");
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    out.extend_from_slice(&[0x08, 0x02]); // uint64 of 8 bytes (extended type 9)
    out.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    string(&mut out, "description");
    map(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "dnslb test geolocation");
    out
}

fn encode_city(out: &mut Vec<u8>, place: &Place) {
    let entries = if place.subdivision.is_some() { 4 } else { 3 };
    map(out, entries);
    string(out, "continent");
    map(out, 1);
    string(out, "code");
    string(out, place.continent);
    string(out, "country");
    map(out, 1);
    string(out, "iso_code");
    string(out, place.country);
    if let Some(subdivision) = place.subdivision {
        string(out, "subdivisions");
        out.extend_from_slice(&[0x01, 0x04]);
        map(out, 1);
        string(out, "iso_code");
        string(out, subdivision);
    }
    string(out, "location");
    map(out, 2);
    string(out, "latitude");
    double(out, place.latitude);
    string(out, "longitude");
    double(out, place.longitude);
}

fn map(out: &mut Vec<u8>, pairs: u8) {
    out.push((7 << 5) | pairs);
}

fn string(out: &mut Vec<u8>, text: &str) {
    assert!(text.len() < 29, "short strings only");
    out.push((2 << 5) | text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

fn uint(out: &mut Vec<u8>, kind: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push((kind << 5) | (8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

fn double(out: &mut Vec<u8>, value: f64) {
    out.push((3 << 5) | 8);
    out.extend_from_slice(&value.to_be_bytes());
}
