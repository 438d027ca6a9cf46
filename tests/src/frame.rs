//! Hand-built query frames: Ethernet (optionally 802.1Q-tagged) / IPv4
//! (optionally with options) or IPv6 / UDP / DNS, every field under the
//! test's control, so tests can feed the XDP program exactly the bytes
//! they mean.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{op::Message, rr::RData};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// The OPT record of a query.
#[derive(Clone, Debug)]
pub struct Opt {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// Raw option bytes (code, length, data...).
    pub options: Vec<u8>,
}

impl Opt {
    pub fn plain(payload: u16) -> Opt {
        Opt {
            payload,
            version: 0,
            dnssec_ok: false,
            options: Vec::new(),
        }
    }

    /// With DO set, as validating resolvers send.
    pub fn dnssec(mut self) -> Opt {
        self.dnssec_ok = true;
        self
    }

    /// With one more option, `code` and raw `data`.
    pub fn option(mut self, code: u16, data: &[u8]) -> Opt {
        self.options.extend_from_slice(&code.to_be_bytes());
        self.options
            .extend_from_slice(&(data.len() as u16).to_be_bytes());
        self.options.extend_from_slice(data);
        self
    }

    /// With a DNS cookie: the client cookie and optionally a server cookie.
    pub fn cookie(self, client: [u8; 8], server: &[u8]) -> Opt {
        self.option(10, &[&client[..], server].concat())
    }

    /// With a Client Subnet option for `addr`/`source` (scope 0).
    pub fn subnet(self, addr: IpAddr, source: u8) -> Opt {
        let (family, octets) = match addr {
            IpAddr::V4(v4) => (1u16, v4.octets().to_vec()),
            IpAddr::V6(v6) => (2u16, v6.octets().to_vec()),
        };
        let mut data = family.to_be_bytes().to_vec();
        data.extend_from_slice(&[source, 0]);
        let mut address = octets[..usize::from(source).div_ceil(8)].to_vec();
        if !source.is_multiple_of(8)
            && let Some(last) = address.last_mut()
        {
            *last &= 0xffu8 << (8 - source % 8);
        }
        data.extend_from_slice(&address);
        self.option(8, &data)
    }
}

/// A DNS query in a frame.
#[derive(Clone, Debug)]
pub struct QueryFrame {
    pub id: u16,
    /// Wire-format question name, case as given.
    pub qname: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    /// Header bytes 2 and 3: RD set by default.
    pub flags: [u8; 2],
    pub opt: Option<Opt>,
    pub vlan: Option<u16>,
    /// IPv4 options, a multiple of 4 bytes.
    pub ip_options: Vec<u8>,
    pub source_port: u16,
    pub port: u16,
    /// The client's address, the packet's source: the frame is IPv6 when
    /// it is an IPv6 address.
    pub client: IpAddr,
    /// The server's address, of the client's family: [`SERVER_IP`] or
    /// [`SERVER_IP6`] unless set.
    pub server: IpAddr,
    /// Destination and source MAC: [`SERVER_MAC`] and [`CLIENT_MAC`] unless
    /// set.
    pub macs: ([u8; 6], [u8; 6]),
}

/// The addresses of the A records in `message`'s answer section.
pub fn a_records(message: &Message) -> Vec<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// Encodes a presentation-format name (no escapes) to wire format.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

impl QueryFrame {
    /// An A/IN query for `name` to port 53, with RD set.
    pub fn a(name: &str) -> QueryFrame {
        QueryFrame {
            id: 0x4d2a,
            qname: wire_name(name),
            qtype: 1,
            qclass: 1,
            flags: [0x01, 0x00],
            opt: None,
            vlan: None,
            ip_options: Vec::new(),
            source_port: 40_000,
            port: 53,
            client: IpAddr::V4(CLIENT_IP),
            server: IpAddr::V4(SERVER_IP),
            macs: (SERVER_MAC, CLIENT_MAC),
        }
    }

    /// An AAAA/IN query for `name`.
    pub fn aaaa(name: &str) -> QueryFrame {
        QueryFrame::a(name).with_type(28)
    }

    /// From `client`; the server moves to the rig's server address of the
    /// client's family if it was of the other.
    pub fn from_client(mut self, client: impl Into<IpAddr>) -> QueryFrame {
        self.client = client.into();
        self.server = match (self.client, self.server) {
            (IpAddr::V4(_), IpAddr::V6(_)) => IpAddr::V4(SERVER_IP),
            (IpAddr::V6(_), IpAddr::V4(_)) => IpAddr::V6(SERVER_IP6),
            (_, server) => server,
        };
        self
    }

    /// To `server`, of the client's family.
    pub fn to_server(mut self, server: IpAddr) -> QueryFrame {
        self.server = server;
        self
    }

    /// Between these Ethernet addresses.
    pub fn with_macs(mut self, destination: [u8; 6], source: [u8; 6]) -> QueryFrame {
        self.macs = (destination, source);
        self
    }

    /// From [`CLIENT_IP6`], over IPv6.
    pub fn over_ipv6(self) -> QueryFrame {
        self.from_client(CLIENT_IP6)
    }

    pub fn with_type(mut self, qtype: u16) -> QueryFrame {
        self.qtype = qtype;
        self
    }

    pub fn with_opt(mut self, opt: Opt) -> QueryFrame {
        self.opt = Some(opt);
        self
    }

    /// The DNS message alone.
    pub fn dns(&self) -> Vec<u8> {
        let mut dns = Vec::new();
        dns.extend_from_slice(&self.id.to_be_bytes());
        dns.extend_from_slice(&self.flags);
        let additional = u16::from(self.opt.is_some());
        for count in [1, 0, 0, additional] {
            dns.extend_from_slice(&count.to_be_bytes());
        }
        dns.extend_from_slice(&self.qname);
        dns.extend_from_slice(&self.qtype.to_be_bytes());
        dns.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some(opt) = &self.opt {
            dns.push(0);
            dns.extend_from_slice(&41u16.to_be_bytes());
            dns.extend_from_slice(&opt.payload.to_be_bytes());
            dns.extend_from_slice(&[0, opt.version, if opt.dnssec_ok { 0x80 } else { 0 }, 0]);
            dns.extend_from_slice(&(opt.options.len() as u16).to_be_bytes());
            dns.extend_from_slice(&opt.options);
        }
        dns
    }

    /// The whole frame, checksums correct.
    ///
    /// # Panics
    /// When client and server are of different families.
    pub fn build(&self) -> Vec<u8> {
        let ethernet = Ethernet {
            macs: self.macs,
            vlan: self.vlan,
        };
        match (self.client, self.server) {
            (IpAddr::V4(client), IpAddr::V4(server)) => udp_frame_between(
                ethernet,
                (client, server),
                &self.ip_options,
                (self.source_port, self.port),
                &self.dns(),
            ),
            (IpAddr::V6(client), IpAddr::V6(server)) => {
                assert!(self.ip_options.is_empty(), "IPv4 options in an IPv6 frame");
                udp6_frame_between(
                    ethernet,
                    (client, server),
                    17,
                    (self.source_port, self.port),
                    &self.dns(),
                )
            }
            (client, server) => panic!("a frame from {client} to {server}"),
        }
    }
}

/// The Ethernet header of a frame: destination and source MAC, and an
/// 802.1Q tag if any.
#[derive(Clone, Copy, Debug)]
pub struct Ethernet {
    pub macs: ([u8; 6], [u8; 6]),
    pub vlan: Option<u16>,
}

impl Ethernet {
    /// To [`SERVER_MAC`] from [`CLIENT_MAC`], tagged with `vlan` if any.
    pub fn rig(vlan: Option<u16>) -> Ethernet {
        Ethernet {
            macs: (SERVER_MAC, CLIENT_MAC),
            vlan,
        }
    }

    fn header(self, ethertype: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&self.macs.0);
        frame.extend_from_slice(&self.macs.1);
        if let Some(tag) = self.vlan {
            frame.extend_from_slice(&0x8100u16.to_be_bytes());
            frame.extend_from_slice(&tag.to_be_bytes());
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }
}

/// Ethernet / IPv6 / UDP around `payload`, from `client` to
/// [`SERVER_IP6`]; `next_header` other than 17 puts the bytes behind
/// another protocol number (an extension header, say) unchanged.
pub fn udp6_frame(
    client: Ipv6Addr,
    vlan: Option<u16>,
    next_header: u8,
    source_port: u16,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    udp6_frame_between(
        Ethernet::rig(vlan),
        (client, SERVER_IP6),
        next_header,
        (source_port, port),
        payload,
    )
}

/// Ethernet / IPv6 / UDP around `payload` between `(client, server)`,
/// from and to the `(source, destination)` ports.
pub fn udp6_frame_between(
    ethernet: Ethernet,
    (client, server): (Ipv6Addr, Ipv6Addr),
    next_header: u8,
    (source_port, port): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = ethernet.header(0x86dd);
    let udp_len = 8 + payload.len();
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[next_header, 17]); // next header, hop limit
    frame.extend_from_slice(&client.octets());
    frame.extend_from_slice(&server.octets());
    let udp_start = frame.len();
    frame.extend_from_slice(&source_port.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    let check = udp6_checksum(client, server, &frame[udp_start..]);
    frame[udp_start + 6..udp_start + 8].copy_from_slice(&check.to_be_bytes());
    frame
}

/// The UDP checksum over IPv6 (RFC 8200 §8.1) of `datagram` (checksum
/// field included: zero when it is right).
pub fn udp6_checksum(source: Ipv6Addr, destination: Ipv6Addr, datagram: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + datagram.len());
    pseudo.extend_from_slice(&source.octets());
    pseudo.extend_from_slice(&destination.octets());
    pseudo.extend_from_slice(&(datagram.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    pseudo.extend_from_slice(datagram);
    match internet_checksum(&pseudo) {
        0 => 0xffff,
        check => check,
    }
}

/// Ethernet / IPv4 / UDP around `payload`, client to server.
pub fn udp_frame(
    vlan: Option<u16>,
    ip_options: &[u8],
    source_port: u16,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    udp_frame_from(CLIENT_IP, vlan, ip_options, source_port, port, payload)
}

/// As [`udp_frame`], from the client address `client`.
pub fn udp_frame_from(
    client: Ipv4Addr,
    vlan: Option<u16>,
    ip_options: &[u8],
    source_port: u16,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    udp_frame_between(
        Ethernet::rig(vlan),
        (client, SERVER_IP),
        ip_options,
        (source_port, port),
        payload,
    )
}

/// Ethernet / IPv4 / UDP around `payload` between `(client, server)`,
/// from and to the `(source, destination)` ports.
pub fn udp_frame_between(
    ethernet: Ethernet,
    (client, server): (Ipv4Addr, Ipv4Addr),
    ip_options: &[u8],
    (source_port, port): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(ip_options.len() % 4, 0, "IPv4 options come in 32-bit words");
    let mut frame = ethernet.header(0x0800);

    let header_len = 20 + ip_options.len();
    let total_len = header_len + 8 + payload.len();
    let ip_start = frame.len();
    frame.push(0x40 | (header_len / 4) as u8);
    frame.push(0);
    frame.extend_from_slice(&(total_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0x12, 0x34, 0x40, 0x00]); // ID, DF
    frame.extend_from_slice(&[17, 17, 0, 0]); // TTL 17, UDP, checksum
    frame.extend_from_slice(&client.octets());
    frame.extend_from_slice(&server.octets());
    frame.extend_from_slice(ip_options);
    let check = internet_checksum(&frame[ip_start..ip_start + header_len]);
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&check.to_be_bytes());

    let udp_start = frame.len();
    frame.extend_from_slice(&source_port.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    let check = udp_checksum(client, server, &frame[udp_start..]);
    frame[udp_start + 6..udp_start + 8].copy_from_slice(&check.to_be_bytes());
    frame
}

/// Sets the checksum of the IPv4 header at `l3` of `frame` right again
/// after a test changed the header.
pub fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    let header_len = usize::from(frame[l3] & 0x0f) * 4;
    frame[l3 + 10..l3 + 12].fill(0);
    let check = internet_checksum(&frame[l3..l3 + header_len]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&check.to_be_bytes());
}

/// RFC 1071 checksum; zero when `bytes` already carry a correct one.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The UDP checksum over IPv4 of `datagram` (checksum field included:
/// zero when it is right, and then returned as 0xffff).
pub fn udp_checksum(source: Ipv4Addr, destination: Ipv4Addr, datagram: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12 + datagram.len());
    pseudo.extend_from_slice(&source.octets());
    pseudo.extend_from_slice(&destination.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(datagram);
    match internet_checksum(&pseudo) {
        0 => 0xffff,
        check => check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_valid_checksums() {
        let frame = QueryFrame::a("www.example.com").build();
        assert_eq!(internet_checksum(&frame[14..34]), 0);
        let frame = QueryFrame::a("www.example.com").over_ipv6().build();
        assert_eq!(udp6_checksum(CLIENT_IP6, SERVER_IP6, &frame[54..]), 0xffff);
        assert_eq!(wire_name("a.BC."), b"\x01a\x02BC\x00");
    }
}
