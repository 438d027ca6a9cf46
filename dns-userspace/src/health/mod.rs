//! Health checks: probing endpoints, and turning results into verdicts.
//!
//! A check is defined once (`[check.web]`) and run against every endpoint
//! of each pool that names it. Each run is a [`Probe`]; its results go
//! through [`Verdict`] (rise and fall thresholds), and verdict changes are
//! sent to the steering task, which rewrites the answers.

mod probe;
mod runner;
mod verdict;

use std::{ops::RangeInclusive, time::Duration};

use hickory_proto::rr::{Name, RecordType};

pub use probe::{ProbeTarget, probe};
pub use runner::{CheckInstance, HealthEvent, HealthRunner, InstanceState, STARTUP_WAIT_MARGIN};
pub use verdict::Verdict;

/// A named health check, as configured.
#[derive(Clone, Debug)]
pub struct CheckDef {
    pub name: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that make a down endpoint up.
    pub rise: u32,
    /// Consecutive failures that make an up endpoint down.
    pub fall: u32,
    /// Healthy when the probe fails, and the other way round.
    pub invert: bool,
    /// An endpoint's verdict before its first probe.
    pub initial: Initial,
    /// Whose verdict counts in a fleet (`--cluster`).
    pub verdict: VerdictScope,
}

/// Whose verdict an endpoint's answers follow in a fleet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VerdictScope {
    /// Healthy while at least this fraction of the live nodes that check
    /// it see it healthy (Route 53's rule; its figure is 0.18).
    Fleet { min_fraction: f64 },
    /// This node's own probes alone.
    Local,
}

/// Route 53's share of checkers that must see an endpoint healthy.
pub const DEFAULT_MIN_FRACTION: f64 = 0.18;

impl Default for VerdictScope {
    fn default() -> Self {
        VerdictScope::Fleet {
            min_fraction: DEFAULT_MIN_FRACTION,
        }
    }
}

/// What an endpoint is before its first probe (`initial` in the policy
/// file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initial {
    /// Probed at once, and its services written into the kernel only once
    /// every endpoint's first probe is in (or the start-up wait is over):
    /// a dead backend is never answered after a restart.
    #[default]
    Probe,
    /// Up; `fall` failures take it down.
    Up,
    /// Down; `rise` passes bring it up.
    Down,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// GET `path` with `Host: host`: passes on a status in `status` and,
    /// with `search`, when it occurs in the first 5,120 bytes of the body
    /// (Route 53's rule). With `tls`, over TLS without certificate
    /// validation, as Route 53 does.
    Http {
        tls: bool,
        port: u16,
        path: String,
        host: Option<String>,
        status: RangeInclusive<u16>,
        search: Option<String>,
    },
    /// A TCP connection is accepted.
    Tcp { port: u16 },
    /// A UDP query for `query`/`qtype` gets NOERROR with an answer, and
    /// with `expect`, one whose record data shows that text.
    Dns {
        port: u16,
        query: Name,
        qtype: RecordType,
        expect: Option<String>,
    },
    /// `sh -c command` exits with status 0.
    Command { command: String },
    /// At least `min_healthy` of the child checks (indices into the
    /// config's checks) are up for the same endpoint.
    Calculated {
        children: Vec<usize>,
        min_healthy: usize,
    },
}

/// How much of a response body a search string is looked for in.
pub const SEARCH_WINDOW: usize = 5120;

#[cfg(test)]
mod tests;
