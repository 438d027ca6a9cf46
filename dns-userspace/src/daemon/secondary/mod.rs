//! Secondary zones: copied from their primary by AXFR (RFC 5936) first,
//! then by IXFR (RFC 1995) from the version held, falling back to AXFR
//! when the primary's changes do not apply; checked for a new version at
//! the SOA's refresh interval, at once on the primary's NOTIFY, and again
//! after the SOA's retry interval when the primary cannot be reached
//! (`fetch` talks to the primary). Each copy is written to the zone's
//! file (the last good copy, so that a restart serves at once) and served
//! as a reload of that file is, under the same no-gap rule.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

mod fetch;

use hickory_proto::rr::{Name, Record};
use tokio::{sync::Notify, task::AbortHandle};

use self::fetch::{FetchError, Primary, axfr, ixfr, soa_serial};
use super::live::Live;
use crate::{cli::ZoneArg, zone::encode_rdata};

/// How soon to try again before the zone has an SOA to say.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The secondary zones being followed, by origin: where each comes from,
/// and the task following it.
#[derive(Default)]
pub struct Followers {
    running: std::sync::Mutex<HashMap<Name, (Source, AbortHandle)>>,
}

/// What a follower follows: a change of any of it starts a new one.
#[derive(Clone, Debug, PartialEq)]
struct Source {
    primary: SocketAddr,
    key: Option<Name>,
    file: PathBuf,
}

impl Followers {
    /// Follows the primary of each secondary zone in `zones` (at start,
    /// and after each reload): zones new or changed get a follower, those
    /// gone lose theirs, the others keep theirs.
    pub fn sync(&self, live: &Weak<Live>, zones: &[ZoneArg]) {
        let Some(alive) = live.upgrade() else {
            return;
        };
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let wanted: HashMap<&Name, Source> = zones
            .iter()
            .filter_map(|zone| {
                let source = Source {
                    primary: zone.transfer.primary?,
                    key: zone.transfer.key.as_ref().map(|key| key.name().clone()),
                    file: zone.file.clone(),
                };
                Some((&zone.origin, source))
            })
            .collect();
        running.retain(|origin, (source, task)| {
            let keep = wanted.get(origin) == Some(&*source);
            if !keep {
                task.abort();
            }
            keep
        });
        for zone in zones {
            let (Some(source), Some(apex)) = (
                wanted.get(&zone.origin),
                crate::zone::WireName::from_name(&zone.origin),
            ) else {
                continue;
            };
            if running.contains_key(&zone.origin) {
                continue;
            }
            let primary = Primary {
                addr: source.primary,
                key: zone.transfer.key.clone(),
            };
            let wake = alive.responder.secondary_wake(&apex);
            let task = tokio::spawn(follow(
                live.clone(),
                zone.origin.clone(),
                zone.file.clone(),
                primary,
                wake,
            ));
            running.insert(zone.origin.clone(), (source.clone(), task.abort_handle()));
        }
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            for (_, task) in running.values() {
                task.abort();
            }
        }
    }
}

/// The timers of a zone's SOA.
#[derive(Clone, Copy, Debug)]
struct Timers {
    serial: u32,
    refresh: Duration,
    retry: Duration,
}

/// The timers of the zone being served, if it is.
fn current(live: &Live, origin: &Name) -> Option<Timers> {
    let apex = crate::zone::WireName::from_name(origin)?;
    let catalog = live.responder.catalog();
    let zone = catalog.get(&apex)?;
    let seconds = |value: i32| Duration::from_secs(u64::from(value.max(1) as u32));
    let soa = zone.soa_data()?;
    Some(Timers {
        serial: soa.serial,
        refresh: seconds(soa.refresh),
        retry: seconds(soa.retry),
    })
}

/// Whether the copy of `zone` in `file` is past the SOA's expire: the
/// primary last confirmed it (the file's modification time) longer ago.
pub fn expired(zone: &crate::zone::Zone, file: &std::path::Path) -> bool {
    let Some(soa) = zone.soa_data() else {
        return false;
    };
    let expire = Duration::from_secs(u64::from(soa.expire.max(0) as u32));
    std::fs::metadata(file)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|confirmed| confirmed.elapsed().ok())
        .is_some_and(|age| age > expire)
}

/// Notes that the primary confirmed the copy in `file` now.
fn confirmed(file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::options()
        .write(true)
        .open(file)?
        .set_modified(std::time::SystemTime::now())
}

async fn follow(live: Weak<Live>, origin: Name, file: PathBuf, source: Primary, wake: Arc<Notify>) {
    let primary = source.addr;
    loop {
        let Some(alive) = live.upgrade() else {
            return;
        };
        let now = current(&alive, &origin);
        let wait = match refresh(&alive, &origin, &file, &source, now.map(|t| t.serial)).await {
            Ok(()) => current(&alive, &origin).map_or(FIRST_RETRY, |t| t.refresh),
            Err(error) => {
                let kind = if now.is_some() { "ixfr" } else { "axfr" };
                alive.responder.count_transfer(kind, "in", "failed");
                let failed = format!("copying zone {origin} from {primary}: {error}");
                warn_transfer(&origin, primary, "failed", &failed);
                expire_if_due(&alive, &origin, &file).await;
                now.map_or(FIRST_RETRY, |t| t.retry)
            }
        };
        drop(alive);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

fn warn_transfer(origin: &Name, primary: SocketAddr, result: &str, message: &str) {
    tracing::warn!(
        event = "transfer",
        zone = %origin,
        primary = %primary,
        result,
        "{message}"
    );
}

/// Stops serving the zone once its copy is past the SOA's expire (RFC
/// 1035 §4.3.5): a stale copy is worse than none.
async fn expire_if_due(live: &Arc<Live>, origin: &Name, file: &std::path::Path) {
    let apex = crate::zone::WireName::from_name(origin);
    let catalog = live.responder.catalog();
    let due = apex
        .and_then(|apex| catalog.get(&apex).cloned())
        .is_some_and(|zone| expired(&zone, file));
    if !due {
        return;
    }
    let (live, origin, file) = (live.clone(), origin.clone(), file.to_owned());
    let withdrawn =
        tokio::task::spawn_blocking(move || live.withdraw_transferred(&origin, file)).await;
    if let Ok(Err(error)) = withdrawn {
        tracing::error!("expiring a zone: {error}");
    }
}

/// Asks the primary for its serial; if it is newer than `serial` (or the
/// zone has no copy yet), transfers the zone, writes it, and serves it.
async fn refresh(
    live: &Arc<Live>,
    origin: &Name,
    file: &std::path::Path,
    source: &Primary,
    serial: Option<u32>,
) -> Result<(), FetchError> {
    let primary = source.addr;
    let theirs = soa_serial(source, origin).await?;
    if serial.is_some_and(|ours| !newer(theirs, ours)) {
        return Ok(confirmed(file)?);
    }
    let held = crate::zone::WireName::from_name(origin)
        .and_then(|apex| live.responder.catalog().get(&apex).cloned());
    let (kind, (records, how)) = match held {
        Some(zone) => match ixfr(source, &zone).await {
            Ok(changed) => ("ixfr", changed),
            Err(error) => {
                live.responder.count_transfer("ixfr", "in", "fallback");
                let why =
                    format!("IXFR of {origin} from {primary}: {error}; asking for the whole zone");
                warn_transfer(origin, primary, "fallback", &why);
                ("axfr", axfr(source, origin).await?)
            }
        },
        None => ("axfr", axfr(source, origin).await?),
    };
    let text = master_file(&records);
    let counted = live.clone();
    let (live, origin, file) = (live.clone(), origin.clone(), file.to_owned());
    let served = tokio::task::spawn_blocking(move || {
        crate::durable::replace_file(&file, text.as_bytes())
            .map_err(|error| format!("writing {}: {error}", file.display()))?;
        live.serve_transferred(&origin, file)
            .map_err(|error| error.to_string())?;
        Ok::<_, String>(origin)
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))?
    .map_err(std::io::Error::other)?;
    counted.responder.count_transfer(kind, "in", "received");
    tracing::info!(
        event = "transfer",
        zone = %served,
        primary = %primary,
        result = "received",
        serial = theirs,
        "copied zone {served} serial {theirs} from {primary}: {how}"
    );
    Ok(())
}

/// Serial arithmetic (RFC 1982): whether `a` is after `b`.
fn newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// The records as a master file the zone loader reads back exactly: each
/// in RFC 3597's generic form (`\# length hex`), which loses nothing.
fn master_file(records: &[Record]) -> String {
    let mut text = String::new();
    for record in records {
        let Some(data) = encode_rdata(&record.data) else {
            continue;
        };
        let hex: String = data.iter().map(|byte| format!("{byte:02x}")).collect();
        text.push_str(&format!(
            "{} {} IN TYPE{} \\# {} {hex}\n",
            record.name,
            record.ttl,
            u16::from(record.record_type()),
            data.len(),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::zone::parse_zone;

    #[test]
    fn serials_compare_as_rfc_1982_says() {
        assert!(newer(2, 1));
        assert!(!newer(1, 1));
        assert!(!newer(1, 2));
        assert!(newer(1, u32::MAX), "wrapped around");
    }

    #[test]
    fn a_copy_reads_back_as_the_same_zone() {
        let origin = Name::from_ascii("example.com.").unwrap();
        let text = "$TTL 300\n@ SOA ns h 7 2 3 4 5\n@ NS ns\nns A 198.18.0.53\n\
                    www TXT \"two words\" \"and more\"\n@ MX 10 mail\nmail AAAA 2001:db8::25\n";
        let zone = parse_zone(&origin, text, Path::new("example.com.zone")).unwrap();
        let records: Vec<Record> = zone
            .soa()
            .records(zone.origin_name())
            .chain(crate::server::records_but_soa(&zone))
            .collect();
        let copy = parse_zone(&origin, &master_file(&records), Path::new("copy")).unwrap();
        let shown = |zone: &crate::zone::Zone| {
            let mut all: Vec<String> = crate::server::records_but_soa(zone)
                .iter()
                .map(|r| format!("{r:?}"))
                .collect();
            all.sort();
            all
        };
        assert_eq!(shown(&copy), shown(&zone));
        assert_eq!(copy.serial(), 7);
    }
}
