//! Docker pools: the running containers labelled `dnslb.pool=<pool>` (and
//! any further labels the pool selects on), followed through the Engine
//! API's event stream, with a full re-list on a period so that an event
//! that was missed cannot leave a stale endpoint behind.
//!
//! Labels read from each container:
//! - `dnslb.pool`: the pool it belongs to;
//! - `dnslb.weight`: its weight (0-255, default 1);
//! - `dnslb.port`: the port its checks probe;
//! - `dnslb.address`: its address, or else
//! - `dnslb.network`: the network whose address it is answered with (else
//!   the pool's `network`, else its only network).
//!
//! A container with a HEALTHCHECK is ready only while Docker says healthy;
//! `kill` and `stop` events drain it at once, before it dies; `die`
//! removes it. When the engine goes away the last known members are kept,
//! and a re-list follows its return.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use bollard::{
    Docker,
    models::{ContainerInspectResponse, HealthStatusEnum},
    query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions},
};
use futures_util::StreamExt;

use super::{PoolSink, metrics::BackendMetrics};
use crate::{
    hooks::{Event, Hooks},
    policy::{Condition, PoolEndpoint},
};

/// The label that puts a container in a pool.
pub const POOL_LABEL: &str = "dnslb.pool";
const WEIGHT_LABEL: &str = "dnslb.weight";
const PORT_LABEL: &str = "dnslb.port";
const ADDRESS_LABEL: &str = "dnslb.address";
const NETWORK_LABEL: &str = "dnslb.network";

/// Longest wait for an answer from the engine.
const REQUEST_TIMEOUT_SECS: u64 = 10;
/// Pause between attempts to reach an engine that is away.
const RECONNECT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerSpec {
    /// `unix:///path` or `tcp://host:port`; default `DOCKER_HOST`, else
    /// `/var/run/docker.sock`.
    pub host: Option<String>,
    /// Labels a container must also carry (`key = "value"`).
    pub labels: BTreeMap<String, String>,
    /// Full re-list period.
    pub relist: Duration,
    /// The network whose address containers are answered with.
    pub network: Option<String>,
}

/// A container as a pool member.
#[derive(Clone, Debug, PartialEq)]
struct Container {
    name: String,
    endpoint: PoolEndpoint,
}

/// Follows the engine for `pool` until the task is dropped.
pub async fn follow(
    pool: String,
    spec: DockerSpec,
    sink: Arc<dyn PoolSink>,
    metrics: Arc<BackendMetrics>,
    hooks: Arc<Hooks>,
) {
    let mut follower = Follower {
        pool,
        spec,
        sink,
        metrics,
        hooks,
        members: BTreeMap::new(),
        draining: HashSet::new(),
        warned: HashSet::new(),
        published: None,
    };
    let mut was_up = true;
    loop {
        match follower.session(&mut was_up).await {
            Ok(()) => {}
            Err(error) if was_up => {
                was_up = false;
                follower.metrics.source_up(&follower.pool, "docker", false);
                tracing::warn!(
                    event = "source_down",
                    pool = %follower.pool,
                    "pool {}: the Docker engine is unreachable ({error}); keeping its {} last known endpoints",
                    follower.pool,
                    follower.members.len()
                );
            }
            Err(_) => {}
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

struct Follower {
    pool: String,
    spec: DockerSpec,
    sink: Arc<dyn PoolSink>,
    metrics: Arc<BackendMetrics>,
    hooks: Arc<Hooks>,
    /// By container ID.
    members: BTreeMap<String, Container>,
    /// Containers told to stop that have not died yet.
    draining: HashSet<String>,
    /// Containers already warned about (bad labels, no address).
    warned: HashSet<String>,
    /// The members the sink was last told of, by container ID.
    published: Option<BTreeMap<String, Container>>,
}

impl Follower {
    /// One connection to the engine: subscribe, list, then follow events
    /// and re-list on the period, until the engine goes away.
    async fn session(&mut self, was_up: &mut bool) -> Result<(), bollard::errors::Error> {
        let docker = connect(self.spec.host.as_deref())?
            .negotiate_version()
            .await?;
        // Subscribed before listing, so nothing between the two is lost.
        let mut events = docker.events(Some(EventsOptions {
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("label".to_owned(), self.selector()),
            ])),
            ..EventsOptions::default()
        }));
        self.relist(&docker).await?;
        if !*was_up {
            tracing::info!(
                event = "source_up",
                pool = %self.pool,
                "pool {}: the Docker engine is back; re-listed {} containers",
                self.pool,
                self.members.len()
            );
        }
        *was_up = true;
        self.metrics.source_up(&self.pool, "docker", true);
        let mut relist = tokio::time::interval(self.spec.relist);
        relist.reset();
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        let id = event.actor.as_ref().and_then(|a| a.id.clone());
                        let action = event.action.unwrap_or_default();
                        self.on_event(&docker, id, &action).await?;
                    }
                    Some(Err(error)) => return Err(error),
                    None => return Err(bollard::errors::Error::RequestTimeoutError),
                },
                _ = relist.tick() => self.relist(&docker).await?,
            }
        }
    }

    fn selector(&self) -> Vec<String> {
        std::iter::once(format!("{POOL_LABEL}={}", self.pool))
            .chain(self.spec.labels.iter().map(|(k, v)| format!("{k}={v}")))
            .collect()
    }

    async fn on_event(
        &mut self,
        docker: &Docker,
        id: Option<String>,
        action: &str,
    ) -> Result<(), bollard::errors::Error> {
        let Some(id) = id else { return Ok(()) };
        match action {
            // Told to stop: out of the answers now, before the process ends.
            "kill" | "stop" => {
                if self.members.contains_key(&id) && self.draining.insert(id.clone()) {
                    if let Some(member) = self.members.get_mut(&id) {
                        member.endpoint.condition = Condition::Draining;
                    }
                    self.publish();
                }
                Ok(())
            }
            "die" | "destroy" | "pause" => {
                self.draining.remove(&id);
                if self.members.remove(&id).is_some() {
                    self.publish();
                }
                Ok(())
            }
            "start" | "unpause" | "restart" => {
                self.draining.remove(&id);
                self.refresh(docker, &id).await
            }
            _ if action.starts_with("health_status") => self.refresh(docker, &id).await,
            _ => Ok(()),
        }
    }

    /// Reads one container again.
    async fn refresh(&mut self, docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
        match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspected) => {
                match self.member(id, &inspected) {
                    Some(member) => self.members.insert(id.to_owned(), member),
                    None => self.members.remove(id),
                };
                self.publish();
                Ok(())
            }
            // Gone before it could be read.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                if self.members.remove(id).is_some() {
                    self.publish();
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Lists the pool's running containers and reads each.
    async fn relist(&mut self, docker: &Docker) -> Result<(), bollard::errors::Error> {
        let listed = docker
            .list_containers(Some(ListContainersOptions {
                filters: Some(HashMap::from([
                    ("label".to_owned(), self.selector()),
                    ("status".to_owned(), vec!["running".to_owned()]),
                ])),
                ..ListContainersOptions::default()
            }))
            .await?;
        let mut members = BTreeMap::new();
        for summary in listed {
            let Some(id) = summary.id else { continue };
            match docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspected) => {
                    if let Some(member) = self.member(&id, &inspected) {
                        members.insert(id, member);
                    }
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(error) => return Err(error),
            }
        }
        self.draining.retain(|id| members.contains_key(id));
        self.members = members;
        self.publish();
        Ok(())
    }

    /// The member a running container makes, if it has an address.
    fn member(&mut self, id: &str, inspected: &ContainerInspectResponse) -> Option<Container> {
        let state = inspected.state.as_ref()?;
        if state.running != Some(true) || state.paused == Some(true) {
            return None;
        }
        let name = inspected
            .name
            .as_deref()
            .unwrap_or(id)
            .trim_start_matches('/')
            .to_owned();
        let empty = HashMap::new();
        let labels = inspected
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .unwrap_or(&empty);
        let mut problems = Vec::new();
        let label = |key: &str| -> Option<String> { labels.get(key).cloned() };
        let weight = match label(WEIGHT_LABEL).map(|w| w.parse::<u8>()) {
            None => 1,
            Some(Ok(weight)) => weight,
            Some(Err(_)) => {
                problems.push(format!("{WEIGHT_LABEL} is not 0-255; using 1"));
                1
            }
        };
        let port = match label(PORT_LABEL).map(|p| p.parse::<u16>()) {
            None => None,
            Some(Ok(port)) => Some(port),
            Some(Err(_)) => {
                problems.push(format!("{PORT_LABEL} is not a port; using the check's"));
                None
            }
        };
        let address = match label(ADDRESS_LABEL) {
            Some(text) => text.parse::<IpAddr>().ok().or_else(|| {
                problems.push(format!("{ADDRESS_LABEL} `{text}` is not an IP address"));
                None
            }),
            None => {
                let network = label(NETWORK_LABEL).or_else(|| self.spec.network.clone());
                network_address(inspected, network.as_deref())
            }
        };
        if address.is_none() && problems.is_empty() {
            problems.push(format!(
                "no address: give it {ADDRESS_LABEL}, or {NETWORK_LABEL} naming one of its networks"
            ));
        }
        if !problems.is_empty() && self.warned.insert(id.to_owned()) {
            tracing::warn!(
                pool = %self.pool,
                container = %name,
                "pool {}: container {name}: {}",
                self.pool,
                problems.join("; ")
            );
        }
        // Docker's own health check decides first: starting or unhealthy
        // is not ready.
        let healthy = state
            .health
            .as_ref()
            .and_then(|health| health.status)
            .is_none_or(|status| {
                matches!(
                    status,
                    HealthStatusEnum::HEALTHY | HealthStatusEnum::NONE | HealthStatusEnum::EMPTY
                )
            });
        let condition = if self.draining.contains(id) {
            Condition::Draining
        } else if healthy {
            Condition::Ready
        } else {
            Condition::Starting
        };
        Some(Container {
            name,
            endpoint: PoolEndpoint {
                weight,
                port,
                condition,
                starts_down: true,
                ..PoolEndpoint::new(address?)
            },
        })
    }

    /// Tells the sink the members, when they changed, and the hooks what
    /// happened to each container.
    fn publish(&mut self) {
        if self.published.as_ref() == Some(&self.members) {
            return;
        }
        let before = self.published.take().unwrap_or_default();
        for (id, member) in &self.members {
            let condition = member.endpoint.condition;
            if before.get(id).map(|b| b.endpoint.condition) != Some(condition) {
                self.emit(member, condition.name());
            }
        }
        for (_, gone) in before
            .iter()
            .filter(|(id, _)| !self.members.contains_key(*id))
        {
            self.emit(gone, "gone");
        }
        let mut endpoints: Vec<PoolEndpoint> = self
            .members
            .values()
            .map(|member| member.endpoint.clone())
            .collect();
        endpoints.sort_by_key(|endpoint| endpoint.addr);
        let ready = endpoints
            .iter()
            .filter(|e| e.condition == Condition::Ready)
            .count();
        tracing::info!(
            event = "members",
            pool = %self.pool,
            "pool {}: {} containers ({ready} ready)",
            self.pool,
            endpoints.len(),
        );
        self.metrics.members(&self.pool, &endpoints);
        self.published = Some(self.members.clone());
        let (sink, pool) = (self.sink.clone(), self.pool.clone());
        tokio::task::block_in_place(|| sink.set_members(&pool, endpoints));
    }

    fn emit(&self, member: &Container, state: &str) {
        self.hooks.emit(Event::Container {
            pool: self.pool.clone(),
            container: member.name.clone(),
            address: member.endpoint.addr,
            state: state.to_owned(),
        });
    }
}

/// The container's address on `network`, or on its only network.
fn network_address(inspected: &ContainerInspectResponse, network: Option<&str>) -> Option<IpAddr> {
    let networks = inspected.network_settings.as_ref()?.networks.as_ref()?;
    let address = |settings: &bollard::models::EndpointSettings| {
        settings
            .ip_address
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .and_then(|ip| ip.parse().ok())
    };
    match network {
        Some(name) => networks.get(name).and_then(address),
        None => {
            let mut addresses = networks.values().filter_map(address);
            let only = addresses.next();
            addresses.next().is_none().then_some(only).flatten()
        }
    }
}

pub(super) fn connect(host: Option<&str>) -> Result<Docker, bollard::errors::Error> {
    match host {
        Some(host) if host.starts_with("unix://") => {
            Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        }
        Some(host) => {
            Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        }
        None => Docker::connect_with_local_defaults()
            .map(|docker| docker.with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))),
    }
}
