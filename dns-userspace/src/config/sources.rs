//! Pools whose endpoints come from elsewhere (`kind = "docker"`,
//! `"registered"`, `"function"`) and the event hooks: from the file as
//! written to the specs `backends` and `hooks` run.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use ipnetwork::IpNetwork;

use super::spec::{HookFileSpec, PoolSpec};
use crate::{
    backends::{ColdStartMode, DockerSpec, FunctionSpec, Launch, PoolSource},
    health::{CheckDef, Probe},
    hooks::{HookSpec, HookTarget},
};

/// The most addresses a function pool's range may give.
const MAX_FUNCTION_ADDRESSES: usize = 4096;
const DEFAULT_RELIST: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(300);
/// Shorter than resolvers' first retry (unbound, BIND and Knot Resolver
/// wait longer than this before asking again).
const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_TARGET_QPS: f64 = 100.0;
const DEFAULT_MAX_INSTANCES: usize = 10;

/// The source of a pool of kind `kind`, or `None` for a static pool.
/// `checks` are the compiled checks (`Err` where one failed), `pools`
/// every pool's name.
pub fn pool_source(
    name: &str,
    pool: &PoolSpec,
    checks: &[Result<CheckDef, ()>],
    check_index: &HashMap<&str, usize>,
    pools: &HashMap<&str, usize>,
) -> Result<Option<PoolSource>, String> {
    let kind = pool.kind.as_deref().unwrap_or("static");
    let fields: [(&str, bool, &[&str]); 18] = [
        ("endpoints", !pool.endpoints.is_empty(), &["static"]),
        (
            "docker_host",
            pool.docker_host.is_some(),
            &["docker", "function"],
        ),
        ("labels", pool.labels.is_some(), &["docker"]),
        ("relist", pool.relist.is_some(), &["docker"]),
        ("network", pool.network.is_some(), &["docker"]),
        ("command", pool.command.is_some(), &["function"]),
        ("image", pool.image.is_some(), &["function"]),
        ("addresses", pool.addresses.is_some(), &["function"]),
        ("port", pool.port.is_some(), &["function"]),
        ("min", pool.min.is_some(), &["function"]),
        ("max", pool.max.is_some(), &["function"]),
        ("target_qps", pool.target_qps.is_some(), &["function"]),
        ("idle_after", pool.idle_after.is_some(), &["function"]),
        ("cold_start", pool.cold_start.is_some(), &["function"]),
        ("deadline", pool.deadline.is_some(), &["function"]),
        ("fallback", pool.fallback.is_some(), &["function"]),
        ("busy", pool.busy.is_some(), &["function"]),
        ("start_timeout", pool.start_timeout.is_some(), &["function"]),
    ];
    if !matches!(kind, "static" | "docker" | "registered" | "function") {
        return Err(format!(
            "unknown kind `{kind}` (known: static, docker, registered, function)"
        ));
    }
    if let Some((field, _, kinds)) = fields.iter().find(|(_, set, k)| *set && !k.contains(&kind)) {
        return Err(format!(
            "`{field}` is for {} pools, and this one is {kind}",
            kinds.join(" and ")
        ));
    }
    let probe_of = |check: &str| -> Result<Probe, String> {
        let index = check_index
            .get(check)
            .ok_or_else(|| format!("no check named `{check}`"))?;
        match checks
            .get(*index)
            .map(|def| def.as_ref().map(|def| &def.probe))
        {
            Some(Ok(Probe::Calculated { .. })) => Err(format!(
                "check `{check}` is calculated; a function pool needs one that probes"
            )),
            Some(Ok(probe)) => Ok(probe.clone()),
            _ => Err(format!("check `{check}` has a problem of its own")),
        }
    };
    Ok(match kind {
        "docker" => Some(PoolSource::Docker(DockerSpec {
            host: pool.docker_host.clone(),
            labels: pool.labels.clone().unwrap_or_default(),
            relist: pool.relist.unwrap_or(DEFAULT_RELIST),
            network: pool.network.clone(),
        })),
        "registered" => Some(PoolSource::Registered),
        "function" => {
            let launch = match (&pool.image, &pool.command) {
                (Some(image), command) => Launch::Image {
                    image: image.clone(),
                    command: command.clone(),
                    host: pool.docker_host.clone(),
                },
                (None, Some(command)) if pool.docker_host.is_none() => {
                    Launch::Command(command.clone())
                }
                (None, Some(_)) => return Err("`docker_host` is for pools with an `image`".into()),
                (None, None) => return Err("a function pool needs `command` or `image`".into()),
            };
            let port = pool.port.ok_or("a function pool needs `port`")?;
            let addresses = address_range(
                pool.addresses
                    .as_deref()
                    .ok_or("a function pool needs `addresses`")?,
            )?;
            let min = pool.min.unwrap_or(0);
            // Unless given: as many as the range allows, up to the default.
            let max = pool
                .max
                .unwrap_or(DEFAULT_MAX_INSTANCES.min(addresses.len()).max(min));
            if max == 0 || min > max {
                return Err(format!(
                    "min {min} and max {max}: need 0 <= min <= max, max >= 1"
                ));
            }
            if max > addresses.len() {
                return Err(format!(
                    "max {max} instances but `addresses` gives {}",
                    addresses.len()
                ));
            }
            let target_qps = pool.target_qps.unwrap_or(DEFAULT_TARGET_QPS);
            if target_qps.is_nan() || target_qps <= 0.0 {
                return Err("target_qps must be above zero".into());
            }
            let fallback = match &pool.fallback {
                Some(fallback) if fallback == name => {
                    return Err("a pool cannot be its own fallback".into());
                }
                Some(fallback) if !pools.contains_key(fallback.as_str()) => {
                    return Err(format!("no pool named `{fallback}` (the fallback)"));
                }
                other => other.clone(),
            };
            let readiness = match &pool.check {
                Some(check) => probe_of(check)?,
                None => Probe::Tcp { port },
            };
            Some(PoolSource::Function(Box::new(FunctionSpec {
                launch,
                addresses,
                port,
                min,
                max,
                target_qps,
                idle_after: pool.idle_after.unwrap_or(DEFAULT_IDLE_AFTER),
                cold_start: pool.cold_start.unwrap_or(ColdStartMode::Hold),
                deadline: pool.deadline.unwrap_or(DEFAULT_DEADLINE),
                fallback,
                readiness,
                busy: pool.busy.as_deref().map(probe_of).transpose()?,
                start_timeout: pool.start_timeout.unwrap_or(DEFAULT_START_TIMEOUT),
            })))
        }
        _ => None,
    })
}

/// `"198.18.1.10-198.18.1.20"` or `"198.18.1.0/28"`.
fn address_range(text: &str) -> Result<Vec<IpAddr>, String> {
    let wrong = || format!("addresses `{text}`: give FIRST-LAST or a network like 198.18.1.0/28");
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (
            first.trim().parse::<IpAddr>().map_err(|_| wrong())?,
            last.trim().parse::<IpAddr>().map_err(|_| wrong())?,
        ),
        None => {
            let network: IpNetwork = text.trim().parse().map_err(|_| wrong())?;
            (network.network(), network.broadcast_or_last())
        }
    };
    let (first, last) = (u128_of(first), u128_of(last));
    if first.1 != last.1 || first.0 > last.0 {
        return Err(wrong());
    }
    let count = last.0 - first.0 + 1;
    if count > MAX_FUNCTION_ADDRESSES as u128 {
        return Err(format!(
            "addresses `{text}` gives {count}; at most {MAX_FUNCTION_ADDRESSES}"
        ));
    }
    Ok((first.0..=last.0).map(|n| ip_of(n, first.1)).collect())
}

trait LastAddress {
    fn broadcast_or_last(&self) -> IpAddr;
}

impl LastAddress for IpNetwork {
    fn broadcast_or_last(&self) -> IpAddr {
        match self {
            IpNetwork::V4(v4) => IpAddr::V4(v4.broadcast()),
            IpNetwork::V6(v6) => {
                let bits = 128 - u32::from(v6.prefix());
                let host_mask = if bits == 128 {
                    u128::MAX
                } else {
                    (1u128 << bits) - 1
                };
                IpAddr::V6((u128::from(v6.network()) | host_mask).into())
            }
        }
    }
}

/// An address as a number, and whether it is IPv4.
fn u128_of(addr: IpAddr) -> (u128, bool) {
    match addr {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), true),
        IpAddr::V6(v6) => (u128::from(v6), false),
    }
}

fn ip_of(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((n as u32).into())
    } else {
        IpAddr::V6(n.into())
    }
}

const DEFAULT_HOOK_RETRIES: u32 = 5;
const DEFAULT_HOOK_BACKOFF: Duration = Duration::from_millis(500);
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);

pub fn hook(name: &str, spec: &HookFileSpec) -> Result<HookSpec, String> {
    let target = match (&spec.url, &spec.command) {
        (Some(url), None) => {
            let uri: hyper::Uri = url.parse().map_err(|e| format!("url `{url}`: {e}"))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(format!("url `{url}`: give http://HOST:PORT/PATH"));
            }
            HookTarget::Webhook(uri)
        }
        (None, Some(command)) => HookTarget::Command(command.clone()),
        _ => return Err("give `url` or `command`, one of them".into()),
    };
    Ok(HookSpec {
        name: name.to_owned(),
        target,
        events: spec.events.clone(),
        retries: spec.retries.unwrap_or(DEFAULT_HOOK_RETRIES),
        backoff: spec.backoff.unwrap_or(DEFAULT_HOOK_BACKOFF),
        timeout: spec.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT),
        dead_letter: spec.dead_letter.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges() {
        let range = address_range("198.18.1.254-198.18.2.1").unwrap();
        assert_eq!(range.len(), 4);
        assert_eq!(range[3], "198.18.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(address_range("127.0.0.64/30").unwrap().len(), 4);
        assert_eq!(address_range("2001:db8::/126").unwrap().len(), 4);
        assert!(address_range("198.18.1.9-198.18.1.1").is_err());
        assert!(address_range("198.18.1.1-2001:db8::1").is_err());
        assert!(address_range("10.0.0.0/8").is_err());
    }
}
