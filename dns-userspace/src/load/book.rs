//! Every endpoint's load as last reported, its slow start, and the share
//! of its weight the answers use now.
//!
//! Endpoints are known by pool name and address, so that what was
//! reported outlives reloads and members that come and go. The share in
//! effect moves only by [`LoadSpec::min_change`] or more (or to 0 or the
//! whole weight), so that noise in the figures does not rewrite the
//! kernel.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use tokio::time::Instant;

use super::{AgentState, LoadSpec, RAMP_START, Reading, Weighing};

/// What the answers use of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Effect {
    /// The share of its configured weight, 0 (shed) to 1.
    pub share: f64,
    /// Out of the answers altogether (its agent says `maint`).
    pub out: bool,
}

impl Effect {
    pub const FULL: Effect = Effect {
        share: 1.0,
        out: false,
    };

    /// Shed: out of the answers while its pool has others.
    pub fn is_shed(&self) -> bool {
        self.out || self.share == 0.0
    }
}

/// What `dnslb endpoint list` says of an endpoint's weighing.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadStatus {
    /// The smoothed utilisation, while a figure counts.
    pub load: Option<f64>,
    pub effect: Effect,
    /// Why, for people: empty when the configured weight is used and
    /// nothing was reported.
    pub why: String,
}

impl LoadStatus {
    /// An endpoint of a pool that weighs by nothing but its weights.
    pub const UNWEIGHED: LoadStatus = LoadStatus {
        load: None,
        effect: Effect::FULL,
        why: String::new(),
    };
}

#[derive(Default)]
struct EndpointLoad {
    /// The last figure, smoothed: a utilisation, or an agent's share.
    level: Option<Level>,
    agent: Option<AgentState>,
    /// When the last usable report came.
    reported: Option<Instant>,
    /// Whether it was answerable and up at the last settling, and since
    /// when it ramps up, if it does.
    up: bool,
    ramp_since: Option<Instant>,
    effect: Option<Effect>,
    /// Causes of bad reports already logged, so each is logged once.
    logged: HashSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Level {
    Utilisation(f64),
    AgentShare(f64),
}

/// The load book of every pool.
#[derive(Default)]
pub struct LoadBook {
    endpoints: HashMap<(String, IpAddr), EndpointLoad>,
    saturated: HashSet<String>,
    /// Whether the first settling was done: endpoints up then need no
    /// slow start (a restarted daemon must not ramp a serving pool).
    settled_once: bool,
    /// Figures read by each pool's reader so far: usable, and not.
    reads: HashMap<String, (u64, u64)>,
}

impl LoadBook {
    /// Takes in a report for `address` of `pool`, weighed by `spec`.
    pub fn report(
        &mut self,
        pool: &str,
        address: IpAddr,
        reading: Reading,
        spec: &LoadSpec,
        now: Instant,
    ) {
        let endpoint = self.endpoint(pool, address);
        let fresh = endpoint.fresh(spec, now);
        match reading {
            Reading::Load(figure) => {
                let utilisation = spec.utilisation(figure);
                let smoothed = match endpoint.level {
                    Some(Level::Utilisation(before)) if fresh => {
                        spec.smoothing * utilisation + (1.0 - spec.smoothing) * before
                    }
                    _ => utilisation,
                };
                endpoint.level = Some(Level::Utilisation(smoothed));
            }
            Reading::Agent(reply) => {
                if let Some(state) = reply.state {
                    endpoint.agent = Some(state);
                }
                if let Some(share) = reply.share {
                    endpoint.level = Some(Level::AgentShare(share.min(1.0)));
                }
            }
        }
        endpoint.reported = Some(now);
        endpoint.logged.clear();
    }

    /// Notes a report for `address` of `pool` that could not be used;
    /// true the first time this cause is seen since the last good report
    /// (the caller logs it then, and only then).
    pub fn problem(&mut self, pool: &str, address: IpAddr, cause: &str) -> bool {
        self.endpoint(pool, address).logged.insert(cause.to_owned())
    }

    fn endpoint(&mut self, pool: &str, address: IpAddr) -> &mut EndpointLoad {
        self.endpoints
            .entry((pool.to_owned(), address))
            .or_default()
    }

    /// Brings every endpoint's share in effect up to `now`: `pools` gives
    /// each pool's name, weighing and endpoints with whether each is
    /// answerable and up. Returns the names of the pools whose shares in
    /// effect changed. Endpoints no longer listed are forgotten.
    pub fn settle<'a>(
        &mut self,
        now: Instant,
        pools: impl Iterator<Item = (&'a str, &'a Weighing, Vec<(IpAddr, bool)>)>,
    ) -> HashSet<String> {
        let mut changed = HashSet::new();
        let mut listed = HashSet::new();
        let mut pools_listed = HashSet::new();
        let first = !self.settled_once;
        self.settled_once = true;
        for (pool, weighing, endpoints) in pools {
            pools_listed.insert(pool.to_owned());
            let mut targets = Vec::with_capacity(endpoints.len());
            for (address, up) in endpoints {
                listed.insert((pool.to_owned(), address));
                let endpoint = self.endpoint(pool, address);
                if up && !endpoint.up && !first {
                    endpoint.ramp_since = weighing.slow_start.map(|_| now);
                }
                endpoint.up = up;
                let from_load = weighing
                    .load
                    .as_ref()
                    .map_or(Effect::FULL, |spec| endpoint.load_effect(spec, now));
                let ramp = endpoint.ramp(weighing.slow_start, now);
                targets.push((address, up, from_load, ramp));
            }
            // Every endpoint that could answer is shed by its load: the
            // pool answers as if none were (the all-down rule's kin).
            let candidates = targets
                .iter()
                .filter(|(_, up, from_load, _)| *up && !from_load.out);
            let mut candidates = candidates.peekable();
            let saturated = candidates.peek().is_some()
                && candidates.all(|(_, _, from_load, _)| from_load.share == 0.0);
            if saturated != self.saturated.contains(pool) {
                changed.insert(pool.to_owned());
                if saturated {
                    self.saturated.insert(pool.to_owned());
                } else {
                    self.saturated.remove(pool);
                }
            }
            let min_change = weighing.load.as_ref().map_or(0.0, |spec| spec.min_change);
            for (address, _, from_load, ramp) in targets {
                let share = if saturated { 1.0 } else { from_load.share };
                let target = Effect {
                    share: share * ramp,
                    out: from_load.out,
                };
                let endpoint = self.endpoint(pool, address);
                let moved = match endpoint.effect {
                    None => true,
                    Some(current) => {
                        current.out != target.out
                            || (current.share != target.share
                                && (target.share == 0.0
                                    || target.share == 1.0
                                    || (current.share - target.share).abs() >= min_change))
                    }
                };
                if moved {
                    // An endpoint first settled was answered at its whole
                    // weight until now.
                    if endpoint.effect.unwrap_or(Effect::FULL) != target {
                        changed.insert(pool.to_owned());
                    }
                    endpoint.effect = Some(target);
                }
            }
        }
        self.endpoints.retain(|key, _| listed.contains(key));
        self.saturated.retain(|pool| pools_listed.contains(pool));
        changed
    }

    /// What the answers use of `address` in `pool` since the last settling.
    pub fn effect(&self, pool: &str, address: IpAddr) -> Effect {
        self.endpoints
            .get(&(pool.to_owned(), address))
            .and_then(|endpoint| endpoint.effect)
            .unwrap_or(Effect::FULL)
    }

    /// Counts a round of reads of `pool`: `usable` figures, `failed` ones.
    pub fn count_reads(&mut self, pool: &str, usable: u64, failed: u64) {
        let counts = self.reads.entry(pool.to_owned()).or_default();
        counts.0 += usable;
        counts.1 += failed;
    }

    /// Figures read so far, usable and not, by pool.
    pub fn reads(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        self.reads
            .iter()
            .map(|(pool, (usable, failed))| (pool.as_str(), *usable, *failed))
    }

    /// Whether every endpoint of `pool` that could answer is shed by load.
    pub fn is_saturated(&self, pool: &str) -> bool {
        self.saturated.contains(pool)
    }

    /// What `address` of `pool` reported and what that does, at `now`.
    pub fn status(
        &self,
        pool: &str,
        address: IpAddr,
        weighing: &Weighing,
        now: Instant,
    ) -> LoadStatus {
        let Some(endpoint) = self.endpoints.get(&(pool.to_owned(), address)) else {
            return LoadStatus::UNWEIGHED;
        };
        let effect = endpoint.effect.unwrap_or(Effect::FULL);
        let mut why = Vec::new();
        let mut load = None;
        if let Some(spec) = &weighing.load {
            match endpoint.reported {
                None => why.push("no load reported: configured weight".to_owned()),
                Some(at) if !endpoint.fresh(spec, now) => why.push(format!(
                    "load report expired ({} s old, expiry {} s): configured weight",
                    now.saturating_duration_since(at).as_secs(),
                    spec.expire.as_secs()
                )),
                Some(_) => {
                    match endpoint.agent {
                        Some(AgentState::Maint) => {
                            why.push("agent says maint: out of the answers".to_owned())
                        }
                        Some(AgentState::Drain) => why.push("agent says drain: shed".to_owned()),
                        Some(AgentState::Ready) | None => {}
                    }
                    match endpoint.level {
                        Some(Level::AgentShare(share)) => {
                            why.push(format!("agent says {:.0}%", share * 100.0))
                        }
                        Some(Level::Utilisation(utilisation)) => {
                            load = Some(utilisation);
                            why.push(describe_load(spec, utilisation));
                        }
                        None => {}
                    }
                }
            }
        }
        if self.saturated.contains(pool) {
            why.push("pool saturated (every endpoint shed): answered as if none were".to_owned());
        }
        if let (Some(since), Some(slow_start)) = (endpoint.ramp_since, weighing.slow_start) {
            why.push(format!(
                "slow start: {} of {} s",
                now.saturating_duration_since(since).as_secs(),
                slow_start.as_secs()
            ));
        }
        LoadStatus {
            load,
            effect,
            why: why.join("; "),
        }
    }
}

/// Says where `utilisation` falls for `spec`.
fn describe_load(spec: &LoadSpec, utilisation: f64) -> String {
    let share = spec.share_for(utilisation);
    match spec.mode {
        super::Mode::Watermarks { low, .. } if utilisation <= low => {
            format!("load {utilisation:.2} at or below low {low}: configured weight")
        }
        super::Mode::Watermarks { high, .. } if utilisation >= high => {
            format!("load {utilisation:.2} at or above high {high}: shed")
        }
        super::Mode::Watermarks { .. } => format!(
            "load {utilisation:.2} between the watermarks: {:.0}% of its weight",
            share * 100.0
        ),
        super::Mode::Inverse => format!(
            "load {utilisation:.2}: {:.0}% of its weight (headroom)",
            share * 100.0
        ),
    }
}

impl EndpointLoad {
    /// Whether its last usable report still counts at `now`.
    fn fresh(&self, spec: &LoadSpec, now: Instant) -> bool {
        self.reported
            .is_some_and(|at| now.saturating_duration_since(at) < spec.expire)
    }

    /// What its reports, if they still count, leave of its weight.
    fn load_effect(&self, spec: &LoadSpec, now: Instant) -> Effect {
        if !self.fresh(spec, now) {
            return Effect::FULL;
        }
        let share = match self.level {
            Some(Level::Utilisation(utilisation)) => spec.share_for(utilisation),
            Some(Level::AgentShare(share)) => share,
            None => 1.0,
        };
        match self.agent {
            Some(AgentState::Maint) => Effect {
                share: 0.0,
                out: true,
            },
            Some(AgentState::Drain) => Effect {
                share: 0.0,
                out: false,
            },
            Some(AgentState::Ready) | None => Effect { share, out: false },
        }
    }

    /// The share its slow start allows at `now` (1 when it does not ramp),
    /// ending the ramp once it is over.
    fn ramp(&mut self, slow_start: Option<Duration>, now: Instant) -> f64 {
        let (Some(since), Some(slow_start)) = (self.ramp_since, slow_start) else {
            self.ramp_since = None;
            return 1.0;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= slow_start || !self.up {
            self.ramp_since = None;
            return 1.0;
        }
        RAMP_START + (1.0 - RAMP_START) * elapsed.as_secs_f64() / slow_start.as_secs_f64()
    }
}

#[cfg(test)]
mod tests;
