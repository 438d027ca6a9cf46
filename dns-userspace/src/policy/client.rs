//! Client networks: the part of a policy that depends on who asks.
//!
//! Addresses are kept as IPv6 (IPv4 mapped into `::ffff:0:0/96`), so one
//! table serves both families; the kernel gets the IPv4 part.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
};

/// Where IPv4 sits in the mapped space, in prefix bits.
const V4_MAPPED_BITS: u8 = 96;

/// A client address with the number of its leading bits that are known:
/// 128 (or 32 for IPv4) for a packet's source, less for an EDNS Client
/// Subnet, or for the representative of a network being compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientNet {
    bits: u128,
    len: u8,
}

impl ClientNet {
    pub fn host(addr: IpAddr) -> ClientNet {
        ClientNet::new(addr, if addr.is_ipv4() { 32 } else { 128 })
    }

    /// `addr/len` in its own family's prefix length; extra bits are cleared.
    pub fn new(addr: IpAddr, len: u8) -> ClientNet {
        let (bits, len) = match addr {
            IpAddr::V4(v4) => (
                u128::from(v4.to_ipv6_mapped()),
                V4_MAPPED_BITS + len.min(32),
            ),
            IpAddr::V6(v6) => (u128::from(v6), len.min(128)),
        };
        ClientNet {
            bits: bits & mask(len),
            len,
        }
    }

    /// The IPv4 network and prefix length, for an IPv4 network.
    pub fn v4(&self) -> Option<(Ipv4Addr, u8)> {
        let v4 = std::net::Ipv6Addr::from(self.bits).to_ipv4_mapped()?;
        (self.len >= V4_MAPPED_BITS).then_some((v4, self.len - V4_MAPPED_BITS))
    }

    /// The network's address in its own family, and its prefix length
    /// there: what a query's source or Client Subnet would carry.
    pub fn family_address(&self) -> (IpAddr, u8) {
        match self.v4() {
            Some((v4, len)) => (IpAddr::V4(v4), len),
            None => (IpAddr::V6(std::net::Ipv6Addr::from(self.bits)), self.len),
        }
    }

    /// The prefix length in the address's own family (what ECS carries).
    pub fn family_len(&self) -> u8 {
        match self.v4() {
            Some((_, len)) => len,
            None => self.len,
        }
    }

    /// Prefix length in the mapped space (IPv4 is 96 + its length).
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The network's address in the mapped space, network order: how the
    /// kernel's client-net tries key it.
    pub fn octets(&self) -> [u8; 16] {
        self.bits.to_be_bytes()
    }

    pub fn contains(&self, other: ClientNet) -> bool {
        other.len >= self.len && other.truncate(self.len) == *self
    }

    fn truncate(&self, len: u8) -> ClientNet {
        ClientNet {
            bits: self.bits & mask(len),
            len,
        }
    }
}

impl std::fmt::Display for ClientNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.v4() {
            Some((v4, len)) => write!(f, "{v4}/{len}"),
            None => write!(f, "{}/{}", std::net::Ipv6Addr::from(self.bits), self.len),
        }
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        len => u128::MAX << (128 - u32::from(len.min(128))),
    }
}

/// Networks mapped to an ordered list of branch indices: the branch to use
/// first, then the ones to fall back to while it has nothing healthy.
/// Longest prefix wins; clients in no listed network get `fallback`.
#[derive(Clone, Debug, Default)]
pub struct ClientTable {
    networks: HashMap<ClientNet, Vec<usize>>,
    lengths: Vec<u8>,
    fallback: Vec<usize>,
}

impl ClientTable {
    pub fn new(fallback: Vec<usize>) -> ClientTable {
        ClientTable {
            fallback,
            ..ClientTable::default()
        }
    }

    /// Sets the preference for `network`; a later call for the same
    /// network replaces an earlier one.
    pub fn insert(&mut self, network: ClientNet, preference: Vec<usize>) {
        if !self.lengths.contains(&network.len) {
            self.lengths.push(network.len);
            self.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
        self.networks.insert(network, preference);
    }

    /// The preference for `client`, and the prefix length it was decided
    /// by (in the client's family, for an ECS scope). Only networks no
    /// longer than the client's known bits count: a /24 subnet cannot be
    /// told apart by a /28 inside it.
    pub fn preference(&self, client: ClientNet) -> (&[usize], u8) {
        for &len in self.lengths.iter().filter(|&&len| len <= client.len) {
            if let Some(found) = self.networks.get(&client.truncate(len)) {
                let scope = ClientNet { len, ..client }.family_len();
                return (found, scope);
            }
        }
        (&self.fallback, 0)
    }

    pub fn fallback(&self) -> &[usize] {
        &self.fallback
    }

    pub fn networks(&self) -> impl Iterator<Item = ClientNet> + '_ {
        self.networks.keys().copied()
    }
}

/// Parses `198.18.0.0/15` or `2001:db8::/32` (a bare address is a host).
pub fn parse_network(text: &str) -> Result<ClientNet, String> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a network like 198.18.0.0/15"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(len) => len
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&len| len <= max)
            .ok_or_else(|| format!("`{text}`: prefix length must be 0 to {max}"))?,
        None => max,
    };
    Ok(ClientNet::new(addr, len))
}

/// As [`parse_network`], for a network an operator writes into a policy:
/// an address with bits set past the prefix (`10.1.2.3/8`) is refused,
/// naming the network it would have been, since a slip of `/28` to `/8`
/// would silently capture a whole network.
pub fn parse_exact_network(text: &str) -> Result<ClientNet, String> {
    let network = parse_network(text)?;
    let written = text.split_once('/').map_or(text, |(addr, _)| addr).trim();
    let (address, len) = network.family_address();
    if written.parse::<IpAddr>() != Ok(address) {
        return Err(format!(
            "`{text}` has bits set past its /{len} prefix: the network is {address}/{len} (write that, or the prefix you meant)"
        ));
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> ClientNet {
        parse_network(text).unwrap()
    }

    #[test]
    fn networks_in_a_policy_have_no_host_bits() {
        assert_eq!(parse_exact_network("10.0.0.0/8"), Ok(net("10.0.0.0/8")));
        assert_eq!(
            parse_exact_network("2001:db8::/32"),
            Ok(net("2001:db8::/32"))
        );
        assert_eq!(parse_exact_network("198.18.0.7"), Ok(net("198.18.0.7/32")));
        assert_eq!(
            parse_exact_network("10.1.2.3/8"),
            Err("`10.1.2.3/8` has bits set past its /8 prefix: the network is 10.0.0.0/8 (write that, or the prefix you meant)".to_owned())
        );
        assert!(
            parse_exact_network("2001:db8::1/64")
                .unwrap_err()
                .contains("the network is 2001:db8::/64")
        );
    }

    #[test]
    fn longest_prefix_no_longer_than_the_client_wins() {
        let mut table = ClientTable::new(vec![9]);
        table.insert(net("198.18.0.0/15"), vec![1]);
        table.insert(net("198.18.7.0/24"), vec![2]);
        table.insert(net("2001:db8::/32"), vec![3]);
        let host = |text: &str| ClientNet::host(text.parse().unwrap());
        assert_eq!(table.preference(host("198.18.7.9")), (&[2][..], 24));
        assert_eq!(table.preference(host("198.19.7.9")), (&[1][..], 15));
        assert_eq!(table.preference(host("192.0.2.1")), (&[9][..], 0));
        assert_eq!(table.preference(host("2001:db8::1")), (&[3][..], 32));
        // A client subnet of /16 cannot be placed in the /24.
        assert_eq!(table.preference(net("198.18.7.0/16")), (&[1][..], 15));
    }

    #[test]
    fn networks_parse_and_refuse_clearly() {
        assert_eq!(net("198.18.7.9/24"), net("198.18.7.0/24"));
        assert_eq!(
            net("198.18.7.9").v4(),
            Some(("198.18.7.9".parse().unwrap(), 32))
        );
        assert!(
            parse_network("198.18.0.0/33")
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            parse_network("bogus/8")
                .unwrap_err()
                .contains("not a network")
        );
    }
}
