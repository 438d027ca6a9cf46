//! A fleet of dnslb nodes that share their configuration and health
//! through etcd (v3), an engine operators already run and trust: no
//! replication protocol of our own.
//!
//! `keys` is the layout under the fleet's prefix, `store` the etcd I/O,
//! `votes` the fleet's health verdict. The daemon (`daemon::fleet`)
//! follows the store and writes to it; nothing here knows the daemon.

pub mod keys;
pub mod store;
pub mod votes;

use std::fmt;

pub use keys::{FleetKey, PushedLoad, ZoneAssignment};
pub use store::{Change, Lease, Store, StoreError, Watch};
pub use votes::FleetVotes;

/// Where the fleet's store is and who this node is in it (`--cluster`,
/// `--cluster-prefix`, `--node-name`), and how it proves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterArgs {
    /// etcd's client URLs (`http://HOST:PORT`, `https://` with TLS).
    pub endpoints: Vec<String>,
    /// The key prefix every key of this fleet lives under, ending in `/`.
    pub prefix: String,
    pub node: String,
    pub credentials: Credentials,
}

/// TLS and etcd's own authentication, read from their files at start.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The CA certificates (PEM) that etcd's server certificate is
    /// checked against; TLS is on when given.
    pub ca: Option<Vec<u8>>,
    /// This node's client certificate and key (PEM).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// An etcd user and password.
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    // Keys and passwords stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tls", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterArgError {
    #[error("`{0}` is not etcd://HOST:PORT[,HOST:PORT...]")]
    Url(String),
    #[error("node name `{0}` must be non-empty and without `/`")]
    Node(String),
}

impl ClusterArgs {
    /// `etcd://HOST:PORT,HOST:PORT`, a prefix, a node name, and the
    /// credentials (with a CA, the endpoints are `https://`).
    pub fn parse(
        url: &str,
        prefix: &str,
        node: &str,
        credentials: Credentials,
    ) -> Result<ClusterArgs, ClusterArgError> {
        let scheme = if credentials.ca.is_some() {
            "https"
        } else {
            "http"
        };
        let bad = || ClusterArgError::Url(url.to_owned());
        let hosts = url.strip_prefix("etcd://").ok_or_else(bad)?;
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(|host| {
                let (name, port) = host.rsplit_once(':').ok_or_else(bad)?;
                if name.is_empty() || port.parse::<u16>().is_err() {
                    return Err(bad());
                }
                Ok(format!("{scheme}://{host}"))
            })
            .collect::<Result<_, _>>()?;
        if node.is_empty() || node.contains('/') {
            return Err(ClusterArgError::Node(node.to_owned()));
        }
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(ClusterArgs {
            endpoints,
            prefix,
            node: node.to_owned(),
            credentials,
        })
    }
}

impl fmt::Display for ClusterArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<&str> = self
            .endpoints
            .iter()
            .map(|url| url.split_once("://").map_or(url.as_str(), |(_, host)| host))
            .collect();
        write!(f, "etcd://{} {}", hosts.join(","), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_member() {
        let args = ClusterArgs::parse(
            "etcd://127.0.0.1:2379,[::1]:2479",
            "/dnslb",
            "a",
            Credentials::default(),
        )
        .unwrap();
        assert_eq!(
            args.endpoints,
            ["http://127.0.0.1:2379", "http://[::1]:2479"]
        );
        assert_eq!(args.prefix, "/dnslb/");
        assert_eq!(args.to_string(), "etcd://127.0.0.1:2379,[::1]:2479 /dnslb/");
        for bad in ["127.0.0.1:2379", "etcd://", "etcd://host", "etcd://h:port"] {
            assert!(
                ClusterArgs::parse(bad, "/p/", "a", Credentials::default()).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            ClusterArgs::parse("etcd://h:1", "/p/", "a/b", Credentials::default()),
            Err(ClusterArgError::Node("a/b".into()))
        );
        let tls = Credentials {
            ca: Some(b"PEM".to_vec()),
            ..Credentials::default()
        };
        let args = ClusterArgs::parse("etcd://h:2379", "/p/", "a", tls).unwrap();
        assert_eq!(args.endpoints, ["https://h:2379"]);
        assert_eq!(args.to_string(), "etcd://h:2379 /p/");
    }
}
