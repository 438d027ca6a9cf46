//! Function pools: instances dnslb starts itself, from zero, when the DNS
//! query for them arrives — one round trip before the client's TCP SYN —
//! and stops again when queries stop.
//!
//! While no instance is ready the service's kernel entry passes queries to
//! the daemon. The first such query wakes the pool's manager, which starts
//! one instance; every query that arrives while it starts shares that one
//! start. The query waits (`hold`, up to `deadline`), or is answered from
//! the `fallback` pool, or gets SERVFAIL, as the pool says. Once the
//! instance passes its readiness check it is written to the kernel, which
//! answers from then on. Each second the manager reads how many answers
//! the pool gave (kernel and daemon), starts another instance while the
//! rate per instance is above the target, and after `idle_after` without a
//! query stops instances down to `min` — unless the `busy` check says an
//! instance is still in use.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{Notify, mpsc, watch},
    time::Instant,
};

use super::{
    PoolSink,
    launch::{Launch, Launching, Stopper},
    metrics::BackendMetrics,
};
use crate::{
    health::{Probe, ProbeTarget, probe},
    hooks::{Event, Hooks},
    policy::PoolEndpoint,
};

/// What a query gets while no instance is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColdStartMode {
    /// Wait up to the deadline for the instance, then the fallback.
    Hold,
    /// The fallback pool's answer at once.
    Fallback,
    /// SERVFAIL at once: the resolver asks again.
    Servfail,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSpec {
    /// How an instance starts: a command or a container.
    pub launch: Launch,
    /// The addresses instances are given, one each.
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub min: usize,
    pub max: usize,
    /// Queries per second one instance is meant to take.
    pub target_qps: f64,
    pub idle_after: Duration,
    pub cold_start: ColdStartMode,
    pub deadline: Duration,
    /// The pool answered from during a cold start (`hold` after its
    /// deadline, `fallback` at once).
    pub fallback: Option<String>,
    /// Passes when an instance is ready to serve.
    pub readiness: Probe,
    /// Passes while an instance is in use: it is not stopped then.
    pub busy: Option<Probe>,
    /// How long an instance may take to become ready before it is given up.
    pub start_timeout: Duration,
}

/// How the answers for a pool with no ready instance reach its manager,
/// and wait for it. Shared with the responder.
#[derive(Debug)]
pub struct ColdStart {
    pub pool: String,
    pub mode: ColdStartMode,
    pub deadline: Duration,
    pub fallback: Option<String>,
    /// When the first query no instance could answer arrived.
    demand: Mutex<Option<Instant>>,
    notify: Notify,
    ready: watch::Receiver<usize>,
}

impl ColdStart {
    /// A query found no ready instance: ask for one (many calls, one start).
    pub fn wake(&self) {
        if let Ok(mut demand) = self.demand.lock() {
            demand.get_or_insert_with(Instant::now);
        }
        self.notify.notify_one();
    }

    /// Whether an instance is ready within `wait`.
    pub async fn ready_within(&self, wait: Duration) -> bool {
        let mut ready = self.ready.clone();
        matches!(
            tokio::time::timeout(wait, ready.wait_for(|count| *count > 0)).await,
            Ok(Ok(_))
        )
    }

    fn take_demand(&self) -> Option<Instant> {
        self.demand.lock().ok().and_then(|mut demand| demand.take())
    }

    fn has_demand(&self) -> bool {
        self.demand.lock().is_ok_and(|demand| demand.is_some())
    }
}

/// Between probes of a starting instance: a cold start's latency is the
/// start plus at most this.
const READINESS_POLL: Duration = Duration::from_millis(10);
const READINESS_PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// How often the rate is measured and idle instances stopped.
const TICK: Duration = Duration::from_secs(1);

/// What an instance's own task reports.
enum InstanceEvent {
    Ready(u64),
    Failed(u64, String),
    Exited(u64),
}

/// A started instance. Dropping it ends it: its task stops watching, and
/// its stopper kills what runs.
struct Instance {
    id: u64,
    address: IpAddr,
    ready: bool,
    task: tokio::task::JoinHandle<()>,
    stopper: Stopper,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the function pool `pool` until the task is dropped; its instances
/// go with it.
pub async fn run(
    pool: String,
    spec: FunctionSpec,
    sink: Arc<dyn PoolSink>,
    metrics: Arc<BackendMetrics>,
    hooks: Arc<Hooks>,
) {
    let (ready_count, ready) = watch::channel(0);
    let cold = Arc::new(ColdStart {
        pool: pool.clone(),
        mode: spec.cold_start,
        deadline: spec.deadline,
        fallback: spec.fallback.clone(),
        demand: Mutex::new(None),
        notify: Notify::new(),
        ready,
    });
    spec.launch.clean_up(&pool).await;
    let (events, mut received) = mpsc::unbounded_channel();
    let mut manager = Manager {
        answered: sink.answers(&pool),
        pool,
        spec,
        sink,
        metrics,
        hooks,
        cold: cold.clone(),
        ready_count,
        events,
        instances: Vec::new(),
        next_id: 0,
        last_query: Instant::now(),
        last_tick: Instant::now(),
    };
    manager.publish();
    manager
        .sink
        .set_cold_start(&manager.pool, Some(cold.clone()));
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = cold.notify.notified() => manager.on_demand(),
            Some(event) = received.recv() => manager.on_instance(event),
            _ = tick.tick() => manager.on_tick().await,
        }
    }
}

struct Manager {
    pool: String,
    spec: FunctionSpec,
    sink: Arc<dyn PoolSink>,
    metrics: Arc<BackendMetrics>,
    hooks: Arc<Hooks>,
    cold: Arc<ColdStart>,
    ready_count: watch::Sender<usize>,
    events: mpsc::UnboundedSender<InstanceEvent>,
    instances: Vec<Instance>,
    next_id: u64,
    /// The pool's answers when last read, and when a query last came.
    answered: u64,
    last_query: Instant,
    last_tick: Instant,
}

impl Manager {
    fn ready(&self) -> usize {
        self.instances.iter().filter(|i| i.ready).count()
    }

    /// A query found nothing ready: start one instance, unless one is
    /// already on its way.
    fn on_demand(&mut self) {
        self.last_query = Instant::now();
        self.metrics
            .invocations
            .with_label_values(&[self.pool.as_str()])
            .inc();
        if self.instances.is_empty() {
            self.metrics
                .cold_starts
                .with_label_values(&[self.pool.as_str()])
                .inc();
            self.start();
        }
    }

    fn on_instance(&mut self, event: InstanceEvent) {
        match event {
            InstanceEvent::Ready(id) => {
                let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) else {
                    return;
                };
                instance.ready = true;
                let address = instance.address;
                let cold_start = self.cold.take_demand().map(|since| since.elapsed());
                if let Some(latency) = cold_start {
                    self.metrics
                        .cold_start_seconds
                        .with_label_values(&[self.pool.as_str()])
                        .observe(latency.as_secs_f64());
                }
                tracing::info!(
                    event = "function_ready",
                    pool = %self.pool,
                    endpoint = %address,
                    "pool {}: instance {address} ready{}",
                    self.pool,
                    cold_start
                        .map(|l| format!(" {:.0} ms after the query that woke it", l.as_secs_f64() * 1e3))
                        .unwrap_or_default()
                );
                self.publish();
                self.emit(address, "ready", cold_start);
            }
            InstanceEvent::Failed(id, why) => {
                if self.instances.len() == 1 {
                    // The start this demand was waiting for is over; the
                    // next query asks afresh.
                    self.cold.take_demand();
                }
                if let Some(address) = self.remove(id) {
                    tracing::warn!(
                        event = "function_failed",
                        pool = %self.pool,
                        endpoint = %address,
                        "pool {}: instance {address} did not become ready: {why}",
                        self.pool
                    );
                    self.emit(address, "failed", None);
                }
            }
            InstanceEvent::Exited(id) => {
                if let Some(address) = self.remove(id) {
                    tracing::warn!(
                        event = "function_exited",
                        pool = %self.pool,
                        endpoint = %address,
                        "pool {}: instance {address} exited",
                        self.pool
                    );
                    self.emit(address, "stopped", None);
                }
            }
        }
    }

    /// Measures the rate, scales out or in, keeps `min` running, and
    /// counts instance time.
    async fn on_tick(&mut self) {
        let now = Instant::now();
        let elapsed = now - self.last_tick;
        self.last_tick = now;
        self.metrics
            .instance_seconds
            .with_label_values(&[self.pool.as_str()])
            .inc_by(self.instances.len() as f64 * elapsed.as_secs_f64());
        let answered = self.sink.answers(&self.pool);
        let new = answered.saturating_sub(self.answered);
        self.answered = answered;
        if new > 0 {
            self.last_query = now;
            self.metrics
                .invocations
                .with_label_values(&[self.pool.as_str()])
                .inc_by(new);
        }
        let ready = self.ready();
        let rate = new as f64 / elapsed.as_secs_f64().max(1e-3);
        // Out: as many as the rate asks for; only when every instance is
        // up, so a start in progress is not counted twice.
        if ready > 0 && ready == self.instances.len() && rate > self.spec.target_qps * ready as f64
        {
            let wanted = (rate / self.spec.target_qps).ceil() as usize;
            for _ in self.instances.len()..wanted.min(self.spec.max) {
                self.start();
            }
        }
        while self.instances.len() < self.spec.min {
            if !self.start() {
                break;
            }
        }
        if now - self.last_query >= self.spec.idle_after && !self.cold.has_demand() {
            self.scale_in().await;
        }
    }

    /// Stops idle instances down to `min`, the newest first, sparing any
    /// the busy check says are in use.
    async fn scale_in(&mut self) {
        let mut index = self.instances.len();
        while index > 0 && self.instances.len() > self.spec.min {
            index -= 1;
            let address = self.instances[index].address;
            if let Some(busy) = &self.spec.busy {
                let target = self.target(address);
                if probe(busy, &target, READINESS_PROBE_TIMEOUT * 4)
                    .await
                    .is_ok()
                {
                    tracing::debug!(pool = %self.pool, "pool {}: {address} is busy; kept", self.pool);
                    continue;
                }
            }
            let instance = self.instances.remove(index);
            tracing::info!(
                event = "function_stopped",
                pool = %self.pool,
                endpoint = %address,
                "pool {}: instance {address} stopped after {:?} without queries",
                self.pool,
                self.spec.idle_after
            );
            // Out of the answers first, then stopped.
            self.publish();
            stop(instance);
            self.emit(address, "stopped", None);
        }
    }

    /// Starts one instance on a free address; false when none is free or
    /// the pool is at `max`.
    fn start(&mut self) -> bool {
        if self.instances.len() >= self.spec.max {
            return false;
        }
        let Some(address) = self
            .spec
            .addresses
            .iter()
            .copied()
            .find(|a| !self.instances.iter().any(|i| i.address == *a))
        else {
            tracing::warn!(pool = %self.pool, "pool {}: every address is in use", self.pool);
            return false;
        };
        let (stopper, launching) = match self.spec.launch.start(&self.pool, address, self.spec.port)
        {
            Ok(started) => started,
            Err(error) => {
                tracing::error!(pool = %self.pool, "pool {}: {error}", self.pool);
                return false;
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let task = tokio::spawn(watch_instance(
            id,
            launching,
            self.spec.readiness.clone(),
            self.target(address),
            self.spec.start_timeout,
            self.events.clone(),
        ));
        tracing::info!(
            event = "function_started",
            pool = %self.pool,
            endpoint = %address,
            "pool {}: starting an instance on {address}",
            self.pool
        );
        self.instances.push(Instance {
            id,
            address,
            ready: false,
            task,
            stopper,
        });
        self.count_instances();
        self.emit(address, "started", None);
        true
    }

    fn remove(&mut self, id: u64) -> Option<IpAddr> {
        let index = self.instances.iter().position(|i| i.id == id)?;
        let instance = self.instances.remove(index);
        let address = instance.address;
        if instance.ready {
            self.publish();
        }
        drop(instance);
        self.count_instances();
        Some(address)
    }

    fn count_instances(&self) {
        self.metrics
            .instances
            .with_label_values(&[self.pool.as_str()])
            .set(self.instances.len() as i64);
    }

    fn target(&self, address: IpAddr) -> ProbeTarget {
        ProbeTarget {
            addr: address,
            port: Some(self.spec.port),
            path: None,
        }
    }

    /// The ready instances become the pool's members (they passed their
    /// readiness check, so they start up); then waiting queries go on.
    fn publish(&self) {
        let members: Vec<PoolEndpoint> = self
            .instances
            .iter()
            .filter(|i| i.ready)
            .map(|i| PoolEndpoint {
                port: Some(self.spec.port),
                ..PoolEndpoint::new(i.address)
            })
            .collect();
        let ready = members.len();
        self.count_instances();
        let (sink, pool) = (self.sink.clone(), self.pool.clone());
        tokio::task::block_in_place(|| sink.set_members(&pool, members));
        self.ready_count.send_replace(ready);
    }

    fn emit(&self, address: IpAddr, action: &str, cold_start: Option<Duration>) {
        self.hooks.emit(Event::Function {
            pool: self.pool.clone(),
            address,
            action: action.to_owned(),
            cold_start_seconds: cold_start.map(|d| d.as_secs_f64()),
        });
    }
}

/// Finishes starting an instance and probes it until it is ready (or
/// gives up), then waits for it to end.
async fn watch_instance(
    id: u64,
    launching: Launching,
    readiness: Probe,
    target: ProbeTarget,
    start_timeout: Duration,
    events: mpsc::UnboundedSender<InstanceEvent>,
) {
    let give_up = Instant::now() + start_timeout;
    let mut ended = match launching.await {
        Ok(ended) => ended,
        Err(error) => {
            let _ = events.send(InstanceEvent::Failed(id, error));
            return;
        }
    };
    let ready = async {
        loop {
            if probe(&readiness, &target, READINESS_PROBE_TIMEOUT)
                .await
                .is_ok()
            {
                return true;
            }
            if Instant::now() >= give_up {
                return false;
            }
            tokio::time::sleep(READINESS_POLL).await;
        }
    };
    tokio::select! {
        () = &mut ended => {
            let _ = events.send(InstanceEvent::Failed(id, "it ended while starting".into()));
            return;
        }
        ready = ready => if !ready {
            let _ = events.send(InstanceEvent::Failed(
                id,
                format!("not ready within {start_timeout:?}"),
            ));
            return;
        }
    }
    let _ = events.send(InstanceEvent::Ready(id));
    ended.await;
    let _ = events.send(InstanceEvent::Exited(id));
}

/// Asks the instance to stop, and kills what is left after the grace
/// period (by dropping it).
fn stop(instance: Instance) {
    tokio::spawn(async move {
        instance.stopper.stop().await;
        drop(instance);
    });
}
