//! Traffic steering at run time: the policy file's services, kept in step
//! with endpoint health in both places that answer — the kernel's maps and
//! the daemon's responder.
//!
//! Health verdicts arrive as events; the steering task gathers what arrived
//! together, re-evaluates the services that use the affected pools, writes
//! their kernel values (see `dataplane::write_service`) and swaps in a new
//! userspace view. A verdict reaches the answers within one pass of that
//! task: microseconds for a handful of services.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use hickory_proto::rr::RecordType;
use tokio::sync::mpsc;

use crate::{
    config::{BranchLabels, Config},
    dataplane::{Dataplane, Generations, KernelService, remove_service, write_service},
    health::{HealthEvent, HealthRunner},
    policy::{ClientNet, Health, Pool, Service},
    zone::{Catalog, WireName},
};

/// Answers counted per branch slot by userspace (the kernel counts its own).
#[derive(Debug)]
pub struct BranchCounters(Vec<AtomicU64>);

impl Default for BranchCounters {
    fn default() -> Self {
        BranchCounters(
            (0..dns_common::BRANCH_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
}

impl BranchCounters {
    fn count(&self, slot: u16) {
        if let Some(counter) = self.0.get(usize::from(slot)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn get(&self, slot: u16) -> u64 {
        self.0
            .get(usize::from(slot))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The services as the responder sees them: policies and a snapshot of
/// health, replaced whole on every change.
#[derive(Debug, Default)]
pub struct Steered {
    pools: Vec<Pool>,
    health: Vec<Vec<bool>>,
    services: HashMap<WireName, Vec<Service>>,
    counters: Arc<BranchCounters>,
}

impl Health for Steered {
    fn is_up(&self, pool: usize, endpoint: usize) -> bool {
        self.health
            .get(pool)
            .and_then(|endpoints| endpoints.get(endpoint))
            .copied()
            .unwrap_or(true)
    }
}

/// One answer from a service.
#[derive(Debug, PartialEq, Eq)]
pub struct SteeredAnswer {
    pub addrs: Vec<IpAddr>,
    pub ttl: u32,
    /// The ECS scope to answer with, for a client-dependent service.
    pub scope: Option<u8>,
}

impl Steered {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Whether some service answers at `name` (lowercase wire form).
    pub fn has_name(&self, name: &[u8]) -> bool {
        self.services.contains_key(name)
    }

    fn service(&self, name: &[u8], record_type: RecordType) -> Option<&Service> {
        self.services
            .get(name)?
            .iter()
            .find(|service| service.record_type == record_type)
    }

    /// The answer for `client`, if a service owns `name`/`record_type`;
    /// `rotation` advances only when one does.
    pub fn answer(
        &self,
        name: &[u8],
        record_type: RecordType,
        client: ClientNet,
        rotation: &AtomicUsize,
    ) -> Option<SteeredAnswer> {
        let service = self.service(name, record_type)?;
        let draw = service.draw(&self.pools, self, Some(client));
        let turn = rotation.fetch_add(1, Ordering::Relaxed);
        let chosen = draw.choose(turn, fastrand::u32(..));
        if let Some(first) = chosen.first() {
            self.counters.count(first.branch);
        }
        let depends = service.policy.depends_on_client();
        Some(SteeredAnswer {
            addrs: chosen.iter().map(|drawn| drawn.addr).collect(),
            ttl: service.ttl,
            scope: depends.then(|| service.policy.scope(client)),
        })
    }
}

/// Where steering publishes the userspace view.
pub trait SteeredSink: Send + Sync {
    fn set_steered(&self, steered: Steered);
}

struct State {
    config: Config,
    runner: Option<HealthRunner>,
    kernel: HashMap<String, KernelService>,
    generations: Generations,
}

/// The running steering: configuration, checks, and the task applying
/// their verdicts.
pub struct Steering {
    state: Mutex<State>,
    sink: Arc<dyn SteeredSink>,
    dataplane: Option<Arc<Mutex<Dataplane>>>,
    counters: Arc<BranchCounters>,
    events: mpsc::UnboundedSender<HealthEvent>,
}

impl Steering {
    /// Starts the checks of `config`, publishes its services and spawns the
    /// task that follows health changes. Call from within the runtime.
    pub fn start(
        config: Config,
        sink: Arc<dyn SteeredSink>,
        dataplane: Option<Arc<Mutex<Dataplane>>>,
    ) -> anyhow::Result<Arc<Steering>> {
        let (events, mut received) = mpsc::unbounded_channel();
        let runner = HealthRunner::start(&config.checks, &config.pools, None, events.clone())?;
        let steering = Arc::new(Steering {
            state: Mutex::new(State {
                config,
                runner: Some(runner),
                kernel: HashMap::new(),
                generations: Generations::default(),
            }),
            sink,
            dataplane,
            counters: Arc::new(BranchCounters::default()),
            events,
        });
        steering.apply(None)?;
        let task = Arc::downgrade(&steering);
        tokio::spawn(async move {
            while let Some(first) = received.recv().await {
                let mut pools = HashSet::from([first.pool]);
                while let Ok(more) = received.try_recv() {
                    pools.insert(more.pool);
                }
                let Some(steering) = task.upgrade() else {
                    return;
                };
                let applied = tokio::task::block_in_place(|| steering.apply(Some(&pools)));
                if let Err(error) = applied {
                    log::error!("applying a health change: {error:#}");
                }
            }
        });
        Ok(steering)
    }

    /// Replaces the configuration: checks restart (keeping the verdicts of
    /// the checks that stay), vanished services leave the kernel, and every
    /// service is written anew.
    pub fn reload(&self, config: Config) -> anyhow::Result<()> {
        let mut state = self.lock()?;
        let runner = HealthRunner::start(
            &config.checks,
            &config.pools,
            state.runner.as_ref(),
            self.events.clone(),
        )?;
        // The old checks stop before the new verdicts are used.
        state.runner = Some(runner);
        // A service is gone when nothing answers its name and type under
        // its label any more (a renamed service leaves its old name).
        let kept: HashSet<(&str, &WireName, RecordType)> = config
            .services
            .iter()
            .map(|s| (s.label.as_str(), &s.name, s.record_type))
            .collect();
        let gone: Vec<Service> = state
            .config
            .services
            .iter()
            .filter(|s| !kept.contains(&(s.label.as_str(), &s.name, s.record_type)))
            .cloned()
            .collect();
        if let Some(dataplane) = &self.dataplane {
            let mut dataplane = dataplane
                .lock()
                .map_err(|_| anyhow::anyhow!("dataplane lock poisoned"))?;
            for service in gone.iter().filter(|s| s.record_type == RecordType::A) {
                let previous = state.kernel.remove(&service.label).unwrap_or_default();
                remove_service(&mut dataplane, service, previous)?;
            }
        }
        state.config = config;
        drop(state);
        self.apply(None)
    }

    /// The labels of the current branch slots, for the next config load.
    pub fn branch_labels(&self) -> BranchLabels {
        self.state
            .lock()
            .map(|state| state.config.branches.clone())
            .unwrap_or_default()
    }

    fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| anyhow::anyhow!("steering lock poisoned"))
    }

    /// Re-evaluates the services that use `pools` (all with `None`).
    fn apply(&self, pools: Option<&HashSet<usize>>) -> anyhow::Result<()> {
        let mut state = self.lock()?;
        let State {
            config,
            runner,
            kernel,
            generations,
        } = &mut *state;
        let health: Vec<Vec<bool>> = config
            .pools
            .iter()
            .enumerate()
            .map(|(p, pool)| {
                (0..pool.endpoints.len())
                    .map(|e| runner.as_ref().is_none_or(|r| r.is_up(p, e)))
                    .collect()
            })
            .collect();
        let mut services: HashMap<WireName, Vec<Service>> = HashMap::new();
        for service in &config.services {
            services
                .entry(service.name.clone())
                .or_default()
                .push(service.clone());
        }
        let steered = Steered {
            pools: config.pools.clone(),
            health,
            services,
            counters: self.counters.clone(),
        };
        if let Some(dataplane) = &self.dataplane {
            let mut dataplane = dataplane
                .lock()
                .map_err(|_| anyhow::anyhow!("dataplane lock poisoned"))?;
            for service in &config.services {
                if service.record_type != RecordType::A {
                    continue;
                }
                if let Some(pools) = pools {
                    let mut used = HashSet::new();
                    service.policy.pools(&mut used);
                    if used.is_disjoint(pools) {
                        continue;
                    }
                }
                let previous = kernel.remove(&service.label).unwrap_or_default();
                let now = write_service(
                    &mut dataplane,
                    generations,
                    service,
                    &config.pools,
                    &steered,
                    previous,
                )?;
                kernel.insert(service.label.clone(), now);
            }
        }
        self.sink.set_steered(steered);
        Ok(())
    }

    /// `dnslb_policy_answers_total` and the health-check metrics.
    pub fn render_metrics(&self, out: &mut String) {
        let Ok(state) = self.state.lock() else {
            return;
        };
        out.push_str("# HELP dnslb_policy_answers_total Answers by service and policy branch (kernel and userspace).\n");
        out.push_str("# TYPE dnslb_policy_answers_total counter\n");
        let dataplane = self.dataplane.as_ref().and_then(|d| d.lock().ok());
        for (slot, service, branch) in state.config.branches.iter() {
            let kernel = dataplane
                .as_ref()
                .and_then(|d| d.branch_answers(slot).ok())
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "dnslb_policy_answers_total{{service=\"{}\",branch=\"{}\"}} {}",
                escape(service),
                escape(branch),
                kernel + self.counters.get(slot)
            );
        }
        let Some(runner) = &state.runner else {
            return;
        };
        type Read = fn(&crate::health::InstanceState) -> f64;
        let metrics: [(&str, &str, &str, Read); 5] = [
            (
                "dnslb_health_check_up",
                "gauge",
                "1 while the check passes on the endpoint (after rise/fall).",
                |s| f64::from(u8::from(s.up.load(Ordering::Relaxed))),
            ),
            (
                "dnslb_health_check_latency_seconds",
                "gauge",
                "Duration of the last probe.",
                |s| s.last_latency_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "dnslb_health_check_probes_total",
                "counter",
                "Probes run.",
                |s| s.probes.load(Ordering::Relaxed) as f64,
            ),
            (
                "dnslb_health_check_failures_total",
                "counter",
                "Probes that failed.",
                |s| s.failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "dnslb_health_check_transitions_total",
                "counter",
                "Changes of the check's verdict.",
                |s| s.transitions.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, read) in metrics {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for instance in runner.instances() {
                let value = read(&instance.state);
                let port = instance
                    .target
                    .port
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{name}{{check=\"{}\",pool=\"{}\",endpoint=\"{}\",port=\"{port}\"}} {value}",
                    escape(&instance.check),
                    escape(&instance.pool),
                    instance.target.addr
                );
            }
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Checks that every service answers inside a zone that is served: a name
/// outside them would have no SOA to answer other types with.
pub fn check_services_in_zones(config: &Config, catalog: &Catalog) -> anyhow::Result<()> {
    for service in &config.services {
        if catalog.find(service.name.as_bytes()).is_none() {
            anyhow::bail!(
                "service `{}`: {} is in no zone being served",
                service.label,
                service.name.to_name()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, path::Path};

    use hickory_proto::{
        op::{Edns, Message, Query, ResponseCode},
        rr::{
            Name,
            rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
        },
    };

    use super::*;
    use crate::{
        config::parse_config,
        server::{Responder, Transport},
        zone::parse_zone,
    };

    const POLICY: &str = r#"
[pool.v4]
endpoints = ["198.18.10.1", "198.18.10.2"]
[pool.v6]
endpoints = ["2001:db8::1"]
[pool.lan]
endpoints = ["198.18.20.1"]
[pool.down]
check = "closed"
endpoints = ["127.0.0.1"]
[check.closed]
kind = "tcp"
port = 1
interval = "50ms"
timeout = "50ms"

[service.www]
name = "www.example.com."
policy = { kind = "multivalue", pool = "v4" }
[service.www6]
name = "www.example.com."
type = "AAAA"
ttl = 120
policy = { pool = "v6" }
[service.near]
name = "near.example.com."
[service.near.policy]
kind = "ip"
branches = [
  { name = "lan", cidrs = ["198.18.0.0/16"], pool = "lan" },
  { default = true, pool = "v4" },
]
[service.closed]
name = "closed.example.com."
fail_closed = true
policy = { pool = "down" }
"#;

    fn responder() -> Arc<Responder> {
        let zone = parse_zone(
            &Name::from_ascii("example.com.").unwrap(),
            "$TTL 300\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.53\nwww TXT \"zone text\"\n\
             alias CNAME near\n",
            Path::new("example.com.zone"),
        )
        .unwrap();
        let mut catalog = Catalog::default();
        catalog.insert(zone);
        Arc::new(Responder::new(catalog, 1232))
    }

    fn ask(
        responder: &Responder,
        name: &str,
        record_type: RecordType,
        client: &str,
        subnet: Option<ClientSubnet>,
    ) -> Message {
        let mut query = Message::query();
        query.metadata.id = 7;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        if let Some(subnet) = subnet {
            let mut edns = Edns::new();
            edns.options_mut().insert(EdnsOption::Subnet(subnet));
            query.edns = Some(edns);
        }
        let bytes = query.to_vec().unwrap();
        let answer = responder
            .respond(&bytes, client.parse().unwrap(), Transport::Udp)
            .expect("an answer");
        Message::from_vec(&answer).unwrap()
    }

    fn addrs(message: &Message) -> Vec<String> {
        message.answers.iter().map(|r| r.data.to_string()).collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn services_answer_in_userspace_beside_the_zone() {
        let config = parse_config(Path::new("dnslb.toml"), POLICY, None).unwrap();
        let responder = responder();
        let _steering = Steering::start(config, responder.clone(), None).unwrap();

        let www = ask(
            &responder,
            "www.example.com.",
            RecordType::A,
            "192.0.2.1",
            None,
        );
        assert_eq!(www.answers.len(), 2);
        assert!(www.metadata.authoritative);
        let again = ask(
            &responder,
            "www.example.com.",
            RecordType::A,
            "192.0.2.1",
            None,
        );
        assert_ne!(addrs(&www), addrs(&again), "rotated");

        let v6 = ask(
            &responder,
            "www.example.com.",
            RecordType::AAAA,
            "192.0.2.1",
            None,
        );
        assert_eq!(addrs(&v6), ["2001:db8::1"]);
        assert_eq!(v6.answers[0].ttl, 120);
        // Other types at a service's name come from the zone; a name that
        // exists only as a service has NODATA, not NXDOMAIN, for them.
        let txt = ask(
            &responder,
            "www.example.com.",
            RecordType::TXT,
            "192.0.2.1",
            None,
        );
        assert_eq!(txt.answers.len(), 1);
        let mx = ask(
            &responder,
            "near.example.com.",
            RecordType::MX,
            "192.0.2.1",
            None,
        );
        assert_eq!(
            (mx.metadata.response_code, mx.answers.len()),
            (ResponseCode::NoError, 0)
        );
        assert_eq!(mx.authorities.len(), 1, "with the SOA");

        // The client's address decides, or its Client Subnet, whose scope
        // comes back with the prefix that decided.
        let lan = ask(
            &responder,
            "near.example.com.",
            RecordType::A,
            "198.18.7.7",
            None,
        );
        assert_eq!(addrs(&lan), ["198.18.20.1"]);
        let subnet = ClientSubnet::new(Ipv4Addr::new(198, 18, 9, 0).into(), 24, 0);
        let by_ecs = ask(
            &responder,
            "near.example.com.",
            RecordType::A,
            "192.0.2.1",
            Some(subnet),
        );
        assert_eq!(addrs(&by_ecs), ["198.18.20.1"]);
        let echoed = by_ecs
            .edns
            .as_ref()
            .and_then(|e| match e.options().get(EdnsCode::Subnet) {
                Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
                _ => None,
            });
        assert_eq!(echoed, Some(16));

        // An alias whose target is a service: the CNAME, then the service's
        // answer for this client, with its scope.
        let alias = ask(
            &responder,
            "alias.example.com.",
            RecordType::A,
            "192.0.2.1",
            Some(subnet),
        );
        let records: Vec<String> = alias.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(records, ["near.example.com.", "198.18.20.1"]);
        let alias6 = ask(
            &responder,
            "alias.example.com.",
            RecordType::AAAA,
            "192.0.2.1",
            None,
        );
        assert_eq!(
            alias6.metadata.response_code,
            ResponseCode::NoError,
            "the target exists"
        );
        assert_eq!((alias6.answers.len(), alias6.authorities.len()), (1, 1));

        // Fail closed: once the only endpoint is down, no records.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let closed = ask(
                &responder,
                "closed.example.com.",
                RecordType::A,
                "192.0.2.1",
                None,
            );
            if closed.answers.is_empty() {
                assert_eq!(closed.metadata.response_code, ResponseCode::NoError);
                assert_eq!(closed.authorities.len(), 1, "with the SOA");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never marked down");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
