//! The client's side of the wire for the generator: its interface (index,
//! MAC, addresses) and a packet socket that puts whole frames on it, in
//! batches.

use std::{
    io::IoSlice,
    net::{IpAddr, Ipv6Addr},
    os::fd::OwnedFd,
};

use anyhow::{Context, bail};
use nix::{
    ifaddrs::getifaddrs,
    sys::socket::{AddressFamily, LinkAddr, SockFlag, SockType, bind, socket},
};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, sendmmsg};

/// An interface as the calling thread's namespace sees it.
pub struct Interface {
    pub name: String,
    /// Its link-layer address: index and MAC, what a packet socket binds to.
    link: LinkAddr,
    addresses: Vec<IpAddr>,
}

impl Interface {
    pub fn find(name: &str) -> anyhow::Result<Interface> {
        let mut link = None;
        let mut addresses = Vec::new();
        for entry in getifaddrs()?.filter(|entry| entry.interface_name == name) {
            let Some(address) = entry.address else {
                continue;
            };
            if let Some(found) = address.as_link_addr() {
                link = Some(*found);
            } else if let Some(v4) = address.as_sockaddr_in() {
                addresses.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = address.as_sockaddr_in6() {
                addresses.push(IpAddr::V6(v6.ip()));
            }
        }
        let link = link.with_context(|| format!("no interface {name} here"))?;
        Ok(Interface {
            name: name.to_owned(),
            link,
            addresses,
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.link.addr().unwrap_or_default()
    }

    /// The interface's address of `peer`'s family (for IPv6 a global one,
    /// not link-local): the source of frames to `peer`.
    pub fn source_for(&self, peer: IpAddr) -> anyhow::Result<IpAddr> {
        let link_local = |v6: &Ipv6Addr| v6.segments()[0] & 0xffc0 == 0xfe80;
        self.addresses
            .iter()
            .copied()
            .find(|address| match (address, peer) {
                (IpAddr::V4(_), IpAddr::V4(_)) => true,
                (IpAddr::V6(v6), IpAddr::V6(_)) => !link_local(v6),
                _ => false,
            })
            .with_context(|| format!("{} has no address to reach {peer} from", self.name))
    }
}

/// A packet socket bound to one interface: what it sends goes out there
/// as it is, Ethernet header included, past the client's IP stack. It is
/// opened with protocol 0, so it receives nothing.
pub struct LinkSender {
    socket: OwnedFd,
}

/// What one batch came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchSent {
    /// Frames the link took.
    pub sent: usize,
    /// Frames it refused (its queue full): dropped, not retried.
    pub refused: usize,
}

impl LinkSender {
    pub fn bind(interface: &Interface) -> anyhow::Result<LinkSender> {
        let socket = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("opening a packet socket (needs CAP_NET_RAW)")?;
        bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &interface.link)
            .with_context(|| format!("binding a packet socket to {}", interface.name))?;
        Ok(LinkSender { socket })
    }

    /// Sends `frames` in one system call where the link takes them all.
    /// A frame the link refuses (no room in its queue, the veth peer's
    /// ring full) is counted and skipped, with the rest of the batch: a
    /// load generator offers load, it does not retransmit.
    pub fn send(&self, frames: &[&[u8]]) -> anyhow::Result<BatchSent> {
        let slices: Vec<[IoSlice<'_>; 1]> = frames.iter().map(|f| [IoSlice::new(f)]).collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = frames
            .iter()
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut messages: Vec<MMsgHdr<'_>> = slices
            .iter()
            .zip(controls.iter_mut())
            .map(|(slice, control)| MMsgHdr::new(slice, control))
            .collect();
        match sendmmsg(&self.socket, &mut messages, SendFlags::DONTWAIT) {
            Ok(sent) => Ok(BatchSent {
                sent,
                refused: frames.len() - sent,
            }),
            Err(rustix::io::Errno::NOBUFS | rustix::io::Errno::AGAIN) => Ok(BatchSent {
                sent: 0,
                refused: frames.len(),
            }),
            Err(error) => bail!("sending on a packet socket: {error}"),
        }
    }
}
