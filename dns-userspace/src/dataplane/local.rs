//! What the kernel answers on: the interface's MAC, and the addresses
//! `--listen` names (for an unspecified address, all of the interface's,
//! of that family, both for `[::]`, and the anycast interface's while it
//! holds them). Written before the program attaches
//! and kept current: a netlink socket subscribed to address and link
//! changes wakes a re-read of the interface (from a thread of its own,
//! which blocks on the socket).

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use dns_common::guard::RateLimit;
use nix::{
    ifaddrs::getifaddrs,
    sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
    },
};
use tokio::sync::Notify;

use super::{DataplaneError, SharedDataplane};

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` (rtnetlink.h):
/// link changes (a new MAC) and address changes of either family.
const ADDRESS_GROUPS: u32 = 0x1 | 0x10 | 0x100;
/// A re-read even without a notification, in case one was lost (the
/// netlink socket's buffer overflowed).
const RESYNC: Duration = Duration::from_secs(30);

/// The interface's MAC and the addresses answered on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    pub mac: [u8; 6],
    pub addrs: BTreeSet<IpAddr>,
}

impl Local {
    /// Reads `iface`'s MAC and the addresses `listen` covers on it and
    /// on `anycast` (the interface of the anycast addresses, if any).
    pub fn read(iface: &str, anycast: Option<&str>, listen: SocketAddr) -> io::Result<Local> {
        let mut local = Local::default();
        let ours = |name: &str| name == iface || anycast == Some(name);
        for entry in getifaddrs()?.filter(|entry| ours(&entry.interface_name)) {
            let Some(address) = entry.address else {
                continue;
            };
            if let Some(link) = address.as_link_addr()
                && let Some(mac) = link.addr()
                && entry.interface_name == iface
            {
                local.mac = mac;
            }
            let addr = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = address.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            if covers(listen.ip(), addr) {
                local.addrs.insert(addr);
            }
        }
        if !listen.ip().is_unspecified() {
            // A specific address is answered on as named, even before it
            // is configured (a socket bound with IP_FREEBIND, say).
            local.addrs = BTreeSet::from([listen.ip().to_canonical()]);
        }
        Ok(local)
    }

    /// Writes the guard and the addresses into the kernel.
    pub fn write(&self, dataplane: &SharedDataplane, limit: &RateLimit) -> Result<(), WriteError> {
        let mut dataplane = dataplane.lock().map_err(|_| WriteError::Poisoned)?;
        dataplane.set_guard(&limit.guard(self.mac))?;
        dataplane.set_local_addrs(&self.addrs)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the kernel maps' lock is poisoned")]
    Poisoned,
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

/// Whether a socket bound to `listen` takes packets to `addr`: an
/// unspecified IPv4 address takes IPv4 alone, `[::]` both families.
fn covers(listen: IpAddr, addr: IpAddr) -> bool {
    match (listen, addr) {
        (IpAddr::V4(listen), IpAddr::V4(_)) => listen.is_unspecified(),
        (IpAddr::V6(listen), _) => listen.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// Keeps the kernel's guard and addresses in step with `iface`, from
/// `current` (what was written at start) on. Runs until the daemon stops.
pub async fn follow(
    dataplane: SharedDataplane,
    iface: String,
    anycast: Option<String>,
    listen: SocketAddr,
    limit: RateLimit,
    mut current: Local,
) -> io::Result<()> {
    let changed = Arc::new(Notify::new());
    if let Err(error) = watch(changed.clone()) {
        tracing::warn!(
            "watching {iface}'s addresses (netlink): {error}; re-reading every {} s instead",
            RESYNC.as_secs()
        );
    }
    loop {
        let _ = tokio::time::timeout(RESYNC, changed.notified()).await;
        let read = match Local::read(&iface, anycast.as_deref(), listen) {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!("reading {iface}'s addresses: {error}");
                continue;
            }
        };
        if read == current {
            continue;
        }
        match read.write(&dataplane, &limit) {
            Ok(()) => {
                tracing::info!(
                    "the kernel answers on {iface} for {:?} now",
                    read.addrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                );
                current = read;
            }
            Err(error) => tracing::error!("writing {iface}'s addresses to the kernel: {error}"),
        }
    }
}

/// Subscribes to address and link changes, and notifies `changed` of
/// each from a thread that blocks on the netlink socket. Only the wake-up
/// matters: the interface is read whole afterwards, so the messages are
/// not parsed, and a lost one (a full socket buffer, ENOBUFS) wakes too.
fn watch(changed: Arc<Notify>) -> io::Result<()> {
    let socket: OwnedFd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(socket.as_raw_fd(), &NetlinkAddr::new(0, ADDRESS_GROUPS))?;
    std::thread::Builder::new()
        .name("dnslb-addresses".into())
        .spawn(move || {
            let mut buffer = [0u8; 8192];
            loop {
                if let Err(error) = recv(socket.as_raw_fd(), &mut buffer, MsgFlags::empty())
                    && error != nix::errno::Errno::ENOBUFS
                {
                    tracing::warn!("netlink address notifications stopped: {error}");
                    return;
                }
                changed.notify_one();
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_cover_their_families() {
        let v4: IpAddr = "198.18.0.2".parse().unwrap();
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        assert!(covers(any4, v4) && !covers(any4, v6));
        assert!(covers(any6, v4) && covers(any6, v6));
        assert!(
            !covers(v4, v4),
            "a specific address is handled by the caller"
        );
    }

    #[test]
    fn loopback_is_read_with_its_addresses() {
        let local = Local::read("lo", None, "[::]:53".parse().unwrap()).unwrap();
        assert!(
            local
                .addrs
                .contains(&"127.0.0.1".parse::<IpAddr>().unwrap())
        );
        let named = Local::read("lo", None, "127.0.0.2:53".parse().unwrap()).unwrap();
        assert_eq!(
            named.addrs,
            BTreeSet::from(["127.0.0.2".parse::<IpAddr>().unwrap()])
        );
    }
}
