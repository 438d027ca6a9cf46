//! The fleet's store: etcd v3 through the `etcd-client` crate. Reads the
//! whole prefix at a revision, watches it from there, writes keys (with
//! compare-and-swap where several nodes may change one key), and keeps a
//! lease for the keys that must go when this node does.

use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, ResponseHeader, TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

use super::{ClusterArgs, FleetKey};

/// How long connecting to etcd, and each request, may take: a fleet write
/// is refused rather than held longer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of a compare-and-swap that lost to another node's write.
const SWAP_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    TimedOut,
    #[error("{0}")]
    Refused(String),
    #[error("another node kept changing {0}; try again")]
    Contended(String),
}

/// The store's revision a response was made at.
fn revision(header: Option<&ResponseHeader>) -> i64 {
    header.map_or(0, ResponseHeader::revision)
}

/// A change under the prefix, as the watch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: FleetKey,
    /// The new value; `None` when the key was deleted (or its lease ran out).
    pub value: Option<Vec<u8>>,
}

/// A connection to the fleet's etcd, for one node.
#[derive(Clone)]
pub struct Store {
    client: Client,
    prefix: String,
}

async fn timed<T>(
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    Ok(tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| StoreError::TimedOut)??)
}

impl Store {
    /// Connects to the first member of `args.endpoints` that answers.
    /// One member at a time, not all at once: a client balancing over
    /// every member would keep sending a share of its requests to a dead
    /// one. Any live member serves reads and watches, and forwards writes
    /// to the leader.
    pub async fn connect(args: &ClusterArgs) -> Result<Store, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), REQUEST_TIMEOUT);
        let credentials = &args.credentials;
        if let Some(ca) = &credentials.ca {
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((certificate, key)) = &credentials.identity {
                tls = tls.identity(Identity::from_pem(certificate, key));
            }
            options = options.with_tls(tls);
        }
        if let Some((name, password)) = &credentials.user {
            options = options.with_user(name.clone(), password.clone());
        }
        let mut last = StoreError::Refused("no etcd endpoint given".into());
        for endpoint in &args.endpoints {
            let connected = async {
                let mut client = timed(Client::connect([endpoint], Some(options.clone()))).await?;
                timed(client.status()).await?;
                Ok::<_, StoreError>(client)
            };
            match connected.await {
                Ok(client) => {
                    return Ok(Store {
                        client,
                        prefix: args.prefix.clone(),
                    });
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    pub fn path(&self, key: &FleetKey) -> String {
        key.path(&self.prefix)
    }

    /// Every fleet key and its value, and the revision they are at.
    pub async fn snapshot(&self) -> Result<(i64, Vec<Change>), StoreError> {
        let mut client = self.client.clone();
        let options = GetOptions::new().with_prefix();
        let response = timed(client.get(self.prefix.as_str(), Some(options))).await?;
        let revision = revision(response.header());
        let changes = response
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = FleetKey::parse(&self.prefix, kv.key_str().ok()?)?;
                Some(Change {
                    key,
                    value: Some(kv.value().to_vec()),
                })
            })
            .collect();
        Ok((revision, changes))
    }

    /// Watches the prefix from `revision` on.
    pub async fn watch(&self, revision: i64) -> Result<Watch, StoreError> {
        let mut client = self.client.clone();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        let stream = timed(client.watch(self.prefix.as_str(), Some(options))).await?;
        Ok(Watch {
            stream,
            prefix: self.prefix.clone(),
        })
    }

    /// Writes `value` at `key`, under `lease` if given; the revision.
    pub async fn put(
        &self,
        key: &FleetKey,
        value: impl Into<Vec<u8>>,
        lease: Option<i64>,
    ) -> Result<i64, StoreError> {
        let mut client = self.client.clone();
        let options = lease.map(|id| PutOptions::new().with_lease(id));
        let response = timed(client.put(self.path(key), value, options)).await?;
        Ok(revision(response.header()))
    }

    /// Deletes `key`; the revision.
    pub async fn delete(&self, key: &FleetKey) -> Result<i64, StoreError> {
        let mut client = self.client.clone();
        let response = timed(client.delete(self.path(key), None)).await?;
        Ok(revision(response.header()))
    }

    /// Writes `value` at `key` unless the key exists; whether it wrote.
    pub async fn put_if_absent(
        &self,
        key: &FleetKey,
        value: impl Into<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client.clone();
        let path = self.path(key);
        let txn = Txn::new()
            .when([Compare::create_revision(path.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(path, value, None)]);
        Ok(timed(client.txn(txn)).await?.succeeded())
    }

    /// Replaces the value at `key` with `change` of it (`None` when the
    /// key is absent), unless another write came between the read and the
    /// write, in which case it reads again; the revision written at.
    pub async fn update(
        &self,
        key: &FleetKey,
        mut change: impl FnMut(Option<&[u8]>) -> Result<Vec<u8>, String>,
    ) -> Result<i64, StoreError> {
        let mut client = self.client.clone();
        let path = self.path(key);
        for _ in 0..SWAP_ATTEMPTS {
            let current = timed(client.get(path.as_str(), None)).await?;
            let (value, modified) = match current.kvs().first() {
                Some(kv) => (Some(kv.value()), kv.mod_revision()),
                None => (None, 0),
            };
            let new = change(value).map_err(StoreError::Refused)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    path.clone(),
                    CompareOp::Equal,
                    modified,
                )])
                .and_then([TxnOp::put(path.clone(), new, None)]);
            let response = timed(client.txn(txn)).await?;
            if response.succeeded() {
                return Ok(revision(response.header()));
            }
        }
        Err(StoreError::Contended(path))
    }

    /// A lease of `ttl`, kept alive until the returned keeper is dropped or
    /// etcd stops answering (`keeper.lost()` then returns).
    pub async fn lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let mut client = self.client.clone();
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let granted = timed(client.lease_grant(seconds, None)).await?;
        let id = granted.id();
        let (mut keeper, mut responses) = timed(client.lease_keep_alive(id)).await?;
        let every = ttl / 3;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if keeper.keep_alive().await.is_err() {
                    return;
                }
                match tokio::time::timeout(REQUEST_TIMEOUT, responses.message()).await {
                    // A TTL of 0 or below: the lease is gone.
                    Ok(Ok(Some(response))) if response.ttl() > 0 => {}
                    _ => return,
                }
            }
        });
        Ok(Lease { id, task })
    }
}

impl Store {
    /// Ends lease `id` now, and with it every key under it.
    pub async fn revoke(&self, id: i64) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        timed(client.lease_revoke(id)).await.map(drop)
    }
}

/// A lease this node holds; revoked by etcd once its TTL passes unrenewed.
pub struct Lease {
    pub id: i64,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Returns once the lease can no longer be renewed.
    pub async fn lost(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watch of the fleet's prefix.
pub struct Watch {
    stream: WatchStream,
    prefix: String,
}

impl Watch {
    /// The next batch of changes and the revision they bring the store
    /// to; an error when the watch broke (etcd gone, or compacted past).
    pub async fn next(&mut self) -> Result<(i64, Vec<Change>), StoreError> {
        let response = self
            .stream
            .message()
            .await?
            .ok_or_else(|| StoreError::Refused("etcd closed the watch".into()))?;
        if response.canceled() {
            return Err(StoreError::Refused(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            )));
        }
        let revision = revision(response.header());
        let changes = response
            .events()
            .iter()
            .filter_map(|event| {
                let kv = event.kv()?;
                let key = FleetKey::parse(&self.prefix, kv.key_str().ok()?)?;
                let value = match event.event_type() {
                    EventType::Put => Some(kv.value().to_vec()),
                    EventType::Delete => None,
                };
                Some(Change { key, value })
            })
            .collect();
        Ok((revision, changes))
    }
}
