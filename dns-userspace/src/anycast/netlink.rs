//! The dummy interface and its addresses, through rtnetlink (as `ip link
//! add NAME type dummy`, `ip addr add|del ADDRESS dev NAME`).

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkDummy, LinkUnspec, packet_route::address::AddressAttribute};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("{what}: {source}")]
    Request {
        what: String,
        source: rtnetlink::Error,
    },
}

/// `EEXIST`, as netlink reports it (negated).
const EXISTS: i32 = -libc::EEXIST;

fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

fn exists(error: &rtnetlink::Error) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(message) if message.raw_code() == EXISTS)
}

/// A route netlink connection, its task on the runtime.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Call from within the runtime.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The index of the dummy interface `name`, made and set up if need be.
    pub async fn dummy(&self, name: &str) -> Result<u32, NetlinkError> {
        let index = match self.index(name).await? {
            Some(index) => index,
            None => {
                let made = self
                    .handle
                    .link()
                    .add(LinkDummy::new(name).build())
                    .execute()
                    .await;
                match made {
                    Ok(()) => {}
                    Err(error) if exists(&error) => {}
                    Err(error) => return Err(request(format!("making interface {name}"))(error)),
                }
                self.index(name)
                    .await?
                    .ok_or_else(|| NetlinkError::Request {
                        what: format!("interface {name}"),
                        source: rtnetlink::Error::RequestFailed,
                    })?
            }
        };
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(request(format!("setting {name} up")))?;
        Ok(index)
    }

    /// The index of the interface `name`, if there is one.
    pub async fn index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|link| link.header.index)),
            // No such device.
            Err(rtnetlink::Error::NetlinkError(message)) if message.raw_code() == -libc::ENODEV => {
                Ok(None)
            }
            Err(error) => Err(request(format!("finding interface {name}"))(error)),
        }
    }

    /// Puts `address` (as a host route) on the interface `index`.
    pub async fn add(&self, index: u32, address: IpAddr) -> Result<(), NetlinkError> {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        match self
            .handle
            .address()
            .add(index, address, prefix)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if exists(&error) => Ok(()),
            Err(error) => Err(request(format!("adding {address}"))(error)),
        }
    }

    /// Takes `address` off the interface `index`, if it is there.
    pub async fn remove(&self, index: u32, address: IpAddr) -> Result<(), NetlinkError> {
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(address)
            .execute();
        while let Some(message) = found
            .try_next()
            .await
            .map_err(request(format!("finding {address}")))?
        {
            let matches = message.attributes.iter().any(
                |attribute| matches!(attribute, AddressAttribute::Address(a) if *a == address),
            );
            if matches {
                self.handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(request(format!("removing {address}")))?;
            }
        }
        Ok(())
    }
}
