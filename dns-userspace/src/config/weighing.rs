//! A pool's `load = { ... }` and `slow_start`, checked.

use std::time::Duration;

use super::spec::{LoadFileSpec, LoadModeKind, LoadSourceKind, PoolSpec};
use crate::load::{ADDRESS_PLACEHOLDER, LoadSource, LoadSpec, Mode, Weighing};

/// How often figures are pulled when no `interval` is given: HAProxy's
/// agent-check default.
const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(2);

pub fn weighing(pool: &PoolSpec) -> Result<Weighing, String> {
    if pool.slow_start.is_some_and(|d| d.is_zero()) {
        return Err("slow_start: give a duration above zero, or leave it out".into());
    }
    let load = match &pool.load {
        Some(spec) => Some(load(spec).map_err(|problem| format!("load: {problem}"))?),
        None => None,
    };
    Ok(Weighing {
        load,
        slow_start: pool.slow_start,
    })
}

fn load(spec: &LoadFileSpec) -> Result<LoadSpec, String> {
    let interval = match (spec.source, spec.interval) {
        (LoadSourceKind::Push, Some(_)) => {
            return Err("interval: pushed figures are not pulled; give `expire` instead".into());
        }
        (_, Some(interval)) if interval.is_zero() => {
            return Err("interval: give a duration above zero".into());
        }
        (_, interval) => interval.unwrap_or(DEFAULT_PULL_INTERVAL),
    };
    let only = |field: &str, given: bool, kinds: &str| -> Result<(), String> {
        match given {
            true => Err(format!("{field}: only for source = {kinds}")),
            false => Ok(()),
        }
    };
    let source = match spec.source {
        LoadSourceKind::Push => {
            only("url", spec.url.is_some(), "\"http\" or \"prometheus\"")?;
            only("port", spec.port.is_some(), "\"agent\"")?;
            only("query", spec.query.is_some(), "\"prometheus\"")?;
            LoadSource::Push
        }
        LoadSourceKind::Http => {
            only("port", spec.port.is_some(), "\"agent\"")?;
            only("query", spec.query.is_some(), "\"prometheus\"")?;
            let url = spec
                .url
                .clone()
                .ok_or("url: source = \"http\" reads a URL, like http://{address}:8080/load")?;
            http_url(&url)?;
            LoadSource::Http { url, interval }
        }
        LoadSourceKind::Agent => {
            only("url", spec.url.is_some(), "\"http\" or \"prometheus\"")?;
            only("query", spec.query.is_some(), "\"prometheus\"")?;
            let port = spec
                .port
                .ok_or("port: source = \"agent\" connects to the agent's port on each endpoint")?;
            LoadSource::Agent { port, interval }
        }
        LoadSourceKind::Prometheus => {
            only("port", spec.port.is_some(), "\"agent\"")?;
            let url = spec
                .url
                .clone()
                .ok_or("url: the Prometheus server, like http://127.0.0.1:9090")?;
            http_url(&url)?;
            let query = spec.query.clone().ok_or("query: the PromQL expression")?;
            if !query.contains(ADDRESS_PLACEHOLDER) {
                return Err(format!(
                    "query: give {ADDRESS_PLACEHOLDER} where each endpoint's address goes, \
                     or every endpoint gets the same figure"
                ));
            }
            LoadSource::Prometheus {
                url,
                query,
                interval,
            }
        }
    };
    let mode = match spec.mode.unwrap_or(LoadModeKind::Watermarks) {
        LoadModeKind::Watermarks => {
            let low = spec.low.unwrap_or(Mode::DEFAULT_LOW);
            let high = spec.high.unwrap_or(Mode::DEFAULT_HIGH);
            if !(low.is_finite() && high.is_finite() && 0.0 <= low && low < high) {
                return Err(format!(
                    "low = {low}, high = {high}: give 0 ≤ low < high (utilisations, or counts \
                     when `capacity` is given)"
                ));
            }
            Mode::Watermarks { low, high }
        }
        LoadModeKind::Inverse => {
            only(
                "low",
                spec.low.is_some(),
                "watermarks (mode = \"watermarks\")",
            )?;
            only(
                "high",
                spec.high.is_some(),
                "watermarks (mode = \"watermarks\")",
            )?;
            Mode::Inverse
        }
    };
    let capacity = match spec.capacity {
        Some(capacity) if !(capacity.is_finite() && capacity > 0.0) => {
            return Err(format!("capacity = {capacity}: give a number above zero"));
        }
        capacity => capacity,
    };
    let smoothing = spec.smoothing.unwrap_or(LoadSpec::DEFAULT_SMOOTHING);
    if !(smoothing > 0.0 && smoothing <= 1.0) {
        return Err(format!(
            "smoothing = {smoothing}: give the weight of a new figure, above 0 and at most 1 \
             (1: no smoothing)"
        ));
    }
    let min_change = spec.min_change.unwrap_or(LoadSpec::DEFAULT_MIN_CHANGE);
    if !(0.0..1.0).contains(&min_change) {
        return Err(format!(
            "min_change = {min_change}: give a share of the weight, from 0 to below 1"
        ));
    }
    let expire = match (spec.expire, &source) {
        (Some(expire), _) if expire.is_zero() => {
            return Err("expire: give a duration above zero".into());
        }
        (Some(expire), _) => expire,
        (None, LoadSource::Push) => LoadSpec::DEFAULT_PUSH_EXPIRE,
        (None, _) => interval * LoadSpec::PULLS_BEFORE_EXPIRY,
    };
    Ok(LoadSpec {
        source,
        mode,
        capacity,
        smoothing,
        min_change,
        expire,
    })
}

/// Whether `url` is one the daemon's HTTP client reads.
fn http_url(url: &str) -> Result<(), String> {
    let with_address = url.replace(ADDRESS_PLACEHOLDER, "198.18.0.1");
    match with_address.parse::<hyper::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => Ok(()),
        _ => Err(format!(
            "url: `{url}` is not an http:// URL with a host (https is not read here)"
        )),
    }
}
