//! Load-aware weights: what each endpoint's load (pushed, pulled from the
//! endpoint or its agent, or queried from Prometheus) and its slow start
//! leave of its configured weight.
//!
//! The result is a share of the configured weight, between 0 (shed: out
//! of the answers while the pool has anything else, still healthy) and 1.
//! The steering applies the shares to the pools before the policies draw,
//! so every policy that weighs, in the kernel and in the daemon, draws by
//! them with its usual rule.

pub mod book;
pub mod pull;
pub mod reading;

use std::{net::IpAddr, time::Duration};

pub use book::{Effect, LoadBook, LoadStatus};
pub use reading::{AgentReply, AgentState, Reading, ReadingError};

/// How a pool's endpoints are weighed beyond their configured weights
/// (`load = { ... }` and `slow_start` in the pool's entry).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weighing {
    pub load: Option<LoadSpec>,
    /// An endpoint that joins or comes back up ramps from
    /// [`RAMP_START`] of its weight to all of it over this time.
    pub slow_start: Option<Duration>,
}

/// Where the endpoint's address goes in a pulled URL or a PromQL query
/// (bracketed in a URL when it is IPv6).
pub const ADDRESS_PLACEHOLDER: &str = "{address}";

/// The share of its weight an endpoint starts a slow start with.
pub const RAMP_START: f64 = 0.1;

/// Where a pool's load figures come from and how they become shares.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    pub source: LoadSource,
    pub mode: Mode,
    /// A count's full load (connections, requests per second): a figure
    /// is divided by it. Without it, figures are utilisations (0 to 1).
    pub capacity: Option<f64>,
    /// The exponential moving average's factor: the weight of a new
    /// figure against the average so far (1: no smoothing).
    pub smoothing: f64,
    /// The least change of share that is written to the answers; a
    /// change to 0 or to the whole weight always is.
    pub min_change: f64,
    /// A figure older than this no longer counts: the endpoint falls back
    /// to its configured weight.
    pub expire: Duration,
}

impl LoadSpec {
    /// Low enough that a closed loop (load that follows the answers an
    /// endpoint gets) does not over-correct: with a backend whose load
    /// rises three times as fast as its share, a new figure's weight above
    /// about a third makes its share flip back and forth between reports
    /// (in the closed-loop test, 0.5 spreads that backend's share 1.7
    /// times as wide as the sampling noise; 0.3, 1.2 times).
    pub const DEFAULT_SMOOTHING: f64 = 0.3;
    pub const DEFAULT_MIN_CHANGE: f64 = 0.05;
    /// A pushed figure's life when none is given.
    pub const DEFAULT_PUSH_EXPIRE: Duration = Duration::from_secs(30);
    /// A pulled figure lives this many intervals when no `expire` is given.
    pub const PULLS_BEFORE_EXPIRY: u32 = 3;

    /// The share of the configured weight that a (smoothed) utilisation
    /// leaves.
    pub fn share_for(&self, utilisation: f64) -> f64 {
        match self.mode {
            Mode::Watermarks { low, high } => {
                if utilisation <= low {
                    1.0
                } else if utilisation >= high {
                    0.0
                } else {
                    (high - utilisation) / (high - low)
                }
            }
            Mode::Inverse => (1.0 - utilisation).clamp(0.0, 1.0),
        }
    }

    /// A reported figure as a utilisation.
    pub fn utilisation(&self, figure: f64) -> f64 {
        match self.capacity {
            Some(capacity) => figure / capacity,
            None => figure,
        }
    }

    /// How often figures are pulled, if they are.
    pub fn interval(&self) -> Option<Duration> {
        match &self.source {
            LoadSource::Push => None,
            LoadSource::Http { interval, .. }
            | LoadSource::Agent { interval, .. }
            | LoadSource::Prometheus { interval, .. } => Some(*interval),
        }
    }
}

/// From load to share.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// NS1's shed load: the whole weight at or below `low`, none at or
    /// above `high`, linearly less in between.
    Watermarks { low: f64, high: f64 },
    /// The weight in proportion to the headroom left (1 − utilisation),
    /// for pools of unequal machines whose weights say their sizes.
    Inverse,
}

impl Mode {
    pub const DEFAULT_LOW: f64 = 0.6;
    pub const DEFAULT_HIGH: f64 = 0.9;
}

/// Where the figures come from.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadSource {
    /// `dnslb endpoint load`, the control API, or the fleet's store.
    Push,
    /// An HTTP GET of `url` (with `{address}` replaced by the endpoint's
    /// address) every `interval`, whose body is a figure or agent words.
    Http { url: String, interval: Duration },
    /// HAProxy's agent-check: a TCP connection to `port` on the endpoint,
    /// which writes a line and closes.
    Agent { port: u16, interval: Duration },
    /// A PromQL `query` (with `{address}` replaced) through the HTTP API
    /// of the Prometheus server at `url`.
    Prometheus {
        url: String,
        query: String,
        interval: Duration,
    },
}

impl LoadSource {
    pub fn name(&self) -> &'static str {
        match self {
            LoadSource::Push => "push",
            LoadSource::Http { .. } => "http",
            LoadSource::Agent { .. } => "agent",
            LoadSource::Prometheus { .. } => "prometheus",
        }
    }
}

/// Why a pushed load was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no pool named `{0}`")]
    NoPool(String),
    #[error("pool `{0}` weighs by no load: give it `load = {{ source = \"push\" }}`")]
    NoLoad(String),
    #[error("pool `{pool}` reads its load itself (source = \"{kind}\"): it takes none pushed")]
    Pulled { pool: String, kind: &'static str },
    #[error("no endpoint {address} in pool `{pool}`")]
    NoEndpoint { pool: String, address: IpAddr },
    #[error("load for {address} in pool `{pool}`: {reading}")]
    Reading {
        pool: String,
        address: IpAddr,
        reading: ReadingError,
    },
    #[error(transparent)]
    Poisoned(#[from] crate::shared::Poisoned),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: Mode) -> LoadSpec {
        LoadSpec {
            source: LoadSource::Push,
            mode,
            capacity: None,
            smoothing: 1.0,
            min_change: 0.0,
            expire: Duration::from_secs(30),
        }
    }

    #[test]
    fn watermarks_shed_linearly_between_low_and_high() {
        let spec = spec(Mode::Watermarks {
            low: 0.3,
            high: 0.8,
        });
        assert_eq!(spec.share_for(0.2), 1.0);
        assert_eq!(spec.share_for(0.3), 1.0);
        assert!((spec.share_for(0.5) - 0.6).abs() < 1e-9);
        assert_eq!(spec.share_for(0.8), 0.0);
        assert_eq!(spec.share_for(0.9), 0.0);
    }

    #[test]
    fn inverse_weighs_by_headroom_and_capacity_turns_counts_into_load() {
        let mut spec = spec(Mode::Inverse);
        spec.capacity = Some(200.0);
        assert!((spec.share_for(spec.utilisation(50.0)) - 0.75).abs() < 1e-9);
        assert_eq!(spec.share_for(spec.utilisation(300.0)), 0.0);
    }
}
