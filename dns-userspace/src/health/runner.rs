//! Running every check against every endpoint, on a thread of its own.
//!
//! Each (check, endpoint) pair is a task that sleeps until its next
//! interval, probes, and records the result in its [`Verdict`]. A task
//! whose verdict changes recomputes its endpoint (a calculated check
//! combines several) and, when that changes, tells the steering task.
//! Probes are spread over the interval so that ten thousand checks a
//! second arrive as a steady trickle, not a burst.

use std::{
    collections::HashMap,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

use super::{CheckDef, Initial, Probe, ProbeTarget, Verdict, probe};
use crate::policy::{Health, Pool};

/// Something changed: the steering task re-evaluates the policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub pool: usize,
    pub endpoint: usize,
    pub addr: std::net::IpAddr,
    pub up: bool,
}

/// One check on one endpoint, as `/metrics` shows it.
#[derive(Debug)]
pub struct CheckInstance {
    pub check: String,
    pub pool: String,
    pub target: ProbeTarget,
    /// Shared with the runner before this one (a reload, a member coming or
    /// going) when it probed the same check on the same target, so that the
    /// counters go on counting for the life of the process.
    pub state: Arc<InstanceState>,
}

#[derive(Debug, Default)]
pub struct InstanceState {
    pub up: AtomicBool,
    /// Duration of the last probe, in microseconds.
    pub last_latency_us: AtomicU64,
    pub probes: AtomicU64,
    pub failures: AtomicU64,
    /// Probes failed since the last one that passed.
    pub failures_in_row: AtomicU64,
    pub transitions: AtomicU64,
    /// Unix time, in seconds, of the last change of verdict (0: none yet).
    pub last_transition: AtomicU64,
    /// The durations of the last probes, for the console's sparkline.
    pub history: LatencyHistory,
    /// Why the last probe that failed failed ("connection refused", "HTTP
    /// 503"); empty while none has.
    pub last_failure: std::sync::Mutex<String>,
}

/// Probe durations kept per check instance.
pub const LATENCY_HISTORY: usize = 30;

/// The last [`LATENCY_HISTORY`] probe durations, in microseconds: a ring
/// of atomics, written by the instance's own task and read by the API.
#[derive(Debug, Default)]
pub struct LatencyHistory {
    slots: [AtomicU64; LATENCY_HISTORY],
    recorded: AtomicU64,
}

impl LatencyHistory {
    pub fn record(&self, micros: u64) {
        let at = self.recorded.load(Ordering::Relaxed);
        self.slots[(at % LATENCY_HISTORY as u64) as usize].store(micros, Ordering::Relaxed);
        self.recorded.store(at + 1, Ordering::Release);
    }

    /// The recorded durations, oldest first.
    pub fn recent(&self) -> Vec<u64> {
        let recorded = self.recorded.load(Ordering::Acquire);
        let kept = recorded.min(LATENCY_HISTORY as u64);
        (recorded - kept..recorded)
            .map(|at| self.slots[(at % LATENCY_HISTORY as u64) as usize].load(Ordering::Relaxed))
            .collect()
    }
}

/// The verdict of each pool endpoint, readable by policy evaluation.
#[derive(Debug, Default)]
struct Board {
    endpoints: Vec<Vec<AtomicBool>>,
}

/// The running checks; stops them when dropped.
pub struct HealthRunner {
    board: Arc<Board>,
    instances: Arc<Vec<CheckInstance>>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Health for HealthRunner {
    fn is_up(&self, pool: usize, endpoint: usize) -> bool {
        self.board
            .endpoints
            .get(pool)
            .and_then(|endpoints| endpoints.get(endpoint))
            .is_none_or(|up| up.load(Ordering::Acquire))
    }
}

/// How much longer than its time-out the start waits for an endpoint's
/// first probe: the health thread starts thousands of probes at once.
pub const STARTUP_WAIT_MARGIN: Duration = Duration::from_millis(500);

/// The first probes still to come in, for the start-up wait.
#[derive(Default)]
struct FirstProbes {
    pending: Mutex<usize>,
    done: Condvar,
}

impl FirstProbes {
    fn one_done(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            *pending = pending.saturating_sub(1);
            self.done.notify_all();
        }
    }

    /// Waits until every first probe is in, or `limit` has passed.
    fn wait(&self, limit: Duration) -> usize {
        let Ok(pending) = self.pending.lock() else {
            return 0;
        };
        self.done
            .wait_timeout_while(pending, limit, |pending| *pending > 0)
            .map_or(0, |(pending, _)| *pending)
    }
}

/// What one endpoint's tasks share: the leaf verdicts by check, the check
/// that decides the endpoint, and where the endpoint's verdict goes.
struct EndpointChecks {
    pool: usize,
    endpoint: usize,
    addr: std::net::IpAddr,
    root: usize,
    leaves: Mutex<HashMap<usize, bool>>,
}

impl HealthRunner {
    /// Starts checking every endpoint of every pool that names a check.
    /// `initial` carries verdicts over from a previous runner (by check
    /// name, pool name and target), so a reload does not forget who is down.
    /// Endpoints whose check starts by probing (`initial = "probe"`, and
    /// nothing carried over) are probed at once, and this returns when
    /// every such first probe is in, or after the longest of their
    /// time-outs (and [`STARTUP_WAIT_MARGIN`]): the services are then
    /// written from real verdicts.
    pub fn start(
        checks: &[CheckDef],
        pools: &[Pool],
        initial: Option<&HealthRunner>,
        events: mpsc::UnboundedSender<HealthEvent>,
    ) -> std::io::Result<HealthRunner> {
        let carried: HashMap<(String, String, ProbeTarget), Arc<InstanceState>> = initial
            .map(|runner| {
                runner
                    .instances
                    .iter()
                    .map(|i| {
                        let key = (i.check.clone(), i.pool.clone(), i.target.clone());
                        (key, i.state.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let board = Arc::new(Board {
            endpoints: pools
                .iter()
                .map(|pool| {
                    pool.endpoints
                        .iter()
                        .map(|_| AtomicBool::new(true))
                        .collect()
                })
                .collect(),
        });
        let mut instances = Vec::new();
        let mut jobs = Vec::new();
        let first_probes = Arc::new(FirstProbes::default());
        let mut startup_wait = Duration::ZERO;
        for (pool_index, pool) in pools.iter().enumerate() {
            let Some(root) = pool.check else { continue };
            for (endpoint_index, endpoint) in pool.endpoints.iter().enumerate() {
                let target = ProbeTarget {
                    addr: endpoint.addr,
                    port: endpoint.port,
                    path: endpoint.path.clone(),
                };
                let shared = Arc::new(EndpointChecks {
                    pool: pool_index,
                    endpoint: endpoint_index,
                    addr: endpoint.addr,
                    root,
                    leaves: Mutex::new(HashMap::new()),
                });
                for leaf in leaves(checks, root) {
                    let key = (checks[leaf].name.clone(), pool.name.clone(), target.clone());
                    // A member that joined at run time starts down, so that
                    // it is answered only once its checks pass.
                    let def = &checks[leaf];
                    let previous = carried.get(&key);
                    let up = previous
                        .map(|state| state.up.load(Ordering::Acquire))
                        .or((endpoint.starts_down).then_some(false))
                        .or(match def.initial {
                            Initial::Probe => None,
                            Initial::Up => Some(true),
                            Initial::Down => Some(false),
                        });
                    if up.is_none() {
                        startup_wait = startup_wait.max(def.timeout + STARTUP_WAIT_MARGIN);
                        if let Ok(mut pending) = first_probes.pending.lock() {
                            *pending += 1;
                        }
                    }
                    if let Some(up) = up
                        && let Ok(mut leaves) = shared.leaves.lock()
                    {
                        leaves.insert(leaf, up);
                    }
                    let state = previous.cloned().unwrap_or_else(|| {
                        Arc::new(InstanceState {
                            up: AtomicBool::new(up.unwrap_or(true)),
                            ..InstanceState::default()
                        })
                    });
                    jobs.push((instances.len(), leaf, shared.clone(), up));
                    instances.push(CheckInstance {
                        check: checks[leaf].name.clone(),
                        pool: pool.name.clone(),
                        target: target.clone(),
                        state,
                    });
                }
                let up = endpoint_verdict(checks, &shared);
                board.endpoints[pool_index][endpoint_index].store(up, Ordering::Release);
            }
        }
        let instances = Arc::new(instances);
        let (stop, stopped) = watch::channel(false);
        let checks = Arc::new(checks.to_vec());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let context = Arc::new(RunContext {
            checks,
            board: board.clone(),
            instances: instances.clone(),
            events,
            first_probes: first_probes.clone(),
        });
        let thread = thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for (instance, check, endpoint, carried) in jobs {
                        let context = context.clone();
                        tasks.spawn(async move {
                            context.run(instance, check, endpoint, carried).await
                        });
                    }
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|stop| *stop).await;
                    // Aborts every check where it waits.
                    tasks.shutdown().await;
                })
            })?;
        let missing = first_probes.wait(startup_wait);
        if missing > 0 {
            tracing::warn!(
                "{missing} endpoints have no first probe result after {} ms: up until they do",
                startup_wait.as_millis()
            );
        }
        Ok(HealthRunner {
            board,
            instances,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn instances(&self) -> &[CheckInstance] {
        &self.instances
    }
}

impl Drop for HealthRunner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct RunContext {
    checks: Arc<Vec<CheckDef>>,
    board: Arc<Board>,
    instances: Arc<Vec<CheckInstance>>,
    events: mpsc::UnboundedSender<HealthEvent>,
    first_probes: Arc<FirstProbes>,
}

impl RunContext {
    async fn run(
        &self,
        instance: usize,
        check: usize,
        endpoint: Arc<EndpointChecks>,
        initial: Option<bool>,
    ) {
        let def = &self.checks[check];
        let state = &self.instances[instance].state;
        let target = &self.instances[instance].target;
        // Without a verdict to start from, the first probe runs at once
        // and decides; with one, thresholds apply from the start.
        let (mut verdict, first) = match initial {
            Some(up) => (
                Verdict::settled(up, def.rise, def.fall),
                first_delay(def.interval),
            ),
            None => (Verdict::new(def.rise, def.fall), Duration::ZERO),
        };
        let mut awaited = initial.is_none();
        let mut next = tokio::time::Instant::now() + first;
        loop {
            tokio::time::sleep_until(next).await;
            next += def.interval;
            let started = Instant::now();
            let result = probe(&def.probe, target, def.timeout).await;
            let elapsed = started.elapsed();
            state.probes.fetch_add(1, Ordering::Relaxed);
            let micros = elapsed.as_micros() as u64;
            state.last_latency_us.store(micros, Ordering::Relaxed);
            state.history.record(micros);
            let passed = result.is_ok() != def.invert;
            if passed {
                state.failures_in_row.store(0, Ordering::Relaxed);
            } else {
                state.failures.fetch_add(1, Ordering::Relaxed);
                state.failures_in_row.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = state.last_failure.lock() {
                    *last = failure_reason(&result);
                }
            }
            if let Some(up) = verdict.record(passed) {
                state.up.store(up, Ordering::Release);
                state.transitions.fetch_add(1, Ordering::Relaxed);
                state
                    .last_transition
                    .store(unix_seconds(), Ordering::Relaxed);
                let verdict = if up { "up" } else { "down" };
                let reason = if up {
                    String::new()
                } else {
                    failure_reason(&result)
                };
                tracing::info!(
                    event = "transition",
                    check = %def.name,
                    pool = %self.instances[instance].pool,
                    endpoint = %target.addr,
                    verdict,
                    reason,
                    "check {} on {}: {verdict}",
                    def.name,
                    target.addr,
                );
                self.leaf_changed(&endpoint, check, up);
            }
            if std::mem::take(&mut awaited) {
                self.first_probes.one_done();
            }
            if tokio::time::Instant::now() > next {
                // A probe that ran past its next turn: start again from now.
                next = tokio::time::Instant::now() + def.interval;
            }
        }
    }

    fn leaf_changed(&self, endpoint: &EndpointChecks, check: usize, up: bool) {
        if let Ok(mut leaves) = endpoint.leaves.lock() {
            leaves.insert(check, up);
        }
        let up = endpoint_verdict(&self.checks, endpoint);
        let slot = &self.board.endpoints[endpoint.pool][endpoint.endpoint];
        if slot.swap(up, Ordering::AcqRel) != up {
            let _ = self.events.send(HealthEvent {
                pool: endpoint.pool,
                endpoint: endpoint.endpoint,
                addr: endpoint.addr,
                up,
            });
        }
    }
}

/// Probes start in slots of this width: spread over the interval so that
/// load is even, but bunched within a slot so that one timer wake-up and
/// one `epoll_wait` serve many probes (at 10,000 probes a second, one
/// wake-up per probe costs more than the probes' own system calls).
const SLOT: Duration = Duration::from_millis(20);

/// A random slot within the first interval.
fn first_delay(interval: Duration) -> Duration {
    let slots = (interval.as_millis() / SLOT.as_millis()).max(1) as u32;
    SLOT * fastrand::u32(..slots)
}

/// The checks that actually probe under `root`: itself, or the leaves of
/// a calculated check.
fn leaves(checks: &[CheckDef], root: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![(root, 0)];
    while let Some((check, depth)) = stack.pop() {
        match &checks[check].probe {
            // Depth bounds a cycle through calculated checks.
            Probe::Calculated { children, .. } if depth < 8 => {
                stack.extend(children.iter().map(|&c| (c, depth + 1)))
            }
            Probe::Calculated { .. } => {}
            _ if !out.contains(&check) => out.push(check),
            _ => {}
        }
    }
    out
}

fn endpoint_verdict(checks: &[CheckDef], endpoint: &EndpointChecks) -> bool {
    let Ok(leaves) = endpoint.leaves.lock() else {
        return true;
    };
    evaluate(checks, endpoint.root, &leaves, 0)
}

/// A check's state from its leaves' verdicts (unprobed leaves count as up).
fn evaluate(checks: &[CheckDef], check: usize, leaves: &HashMap<usize, bool>, depth: u8) -> bool {
    match &checks[check].probe {
        Probe::Calculated {
            children,
            min_healthy,
        } if depth < 8 => {
            let healthy = children
                .iter()
                .filter(|&&child| evaluate(checks, child, leaves, depth + 1))
                .count();
            (healthy >= *min_healthy) != checks[check].invert
        }
        Probe::Calculated { .. } => false,
        _ => leaves.get(&check).copied().unwrap_or(true),
    }
}

/// Why a probe whose `result` failed the check failed: its error, or, for
/// an inverted check, that it passed.
fn failure_reason<E: std::fmt::Display>(result: &Result<(), E>) -> String {
    match result {
        Err(why) => why.to_string(),
        Ok(()) => "passed, inverted".to_owned(),
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::VerdictScope;

    fn def(name: &str, probe: Probe) -> CheckDef {
        CheckDef {
            name: name.into(),
            probe,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
            invert: false,
            initial: Initial::Probe,
            verdict: VerdictScope::Local,
        }
    }

    #[test]
    fn calculated_checks_count_their_children() {
        let checks = vec![
            def("a", Probe::Tcp { port: 1 }),
            def("b", Probe::Tcp { port: 2 }),
            def("c", Probe::Tcp { port: 3 }),
            def(
                "two_of_three",
                Probe::Calculated {
                    children: vec![0, 1, 2],
                    min_healthy: 2,
                },
            ),
        ];
        assert_eq!(leaves(&checks, 3).len(), 3);
        let states = |a, b, c| HashMap::from([(0, a), (1, b), (2, c)]);
        assert!(evaluate(&checks, 3, &states(true, false, true), 0));
        assert!(!evaluate(&checks, 3, &states(false, false, true), 0));
        let mut inverted = checks.clone();
        inverted[3].invert = true;
        assert!(evaluate(&inverted, 3, &states(false, false, true), 0));
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn latency_history_keeps_the_last_probes_oldest_first() {
        let history = LatencyHistory::default();
        assert!(history.recent().is_empty());
        for micros in 1..=3 {
            history.record(micros);
        }
        assert_eq!(history.recent(), vec![1, 2, 3]);
        for micros in 4..=(LATENCY_HISTORY as u64 + 5) {
            history.record(micros);
        }
        let recent = history.recent();
        assert_eq!(recent.len(), LATENCY_HISTORY);
        assert_eq!(recent.first(), Some(&6));
        assert_eq!(recent.last(), Some(&(LATENCY_HISTORY as u64 + 5)));
    }
}
