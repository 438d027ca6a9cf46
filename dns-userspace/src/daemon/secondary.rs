//! Secondary zones: copied from their primary by AXFR (RFC 5936), checked
//! for a new version at the SOA's refresh interval, at once on the
//! primary's NOTIFY, and again after the SOA's retry interval when the
//! primary cannot be reached. Each copy is written to the zone's file
//! (the last good copy, so that a restart serves at once) and served as a
//! reload of that file is, under the same no-gap rule.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, Query},
    rr::{Name, RData, Record, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};

use super::live::Live;
use crate::{cli::ZoneArg, server::framed, zone::encode_rdata};

/// How long one exchange with the primary may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How soon to try again before the zone has an SOA to say.
const FIRST_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the primary's answer does not parse: {0}")]
    Parse(#[from] hickory_proto::serialize::binary::DecodeError),
    #[error("encoding a request: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
    #[error("the primary answered {0}")]
    Refused(hickory_proto::op::ResponseCode),
    #[error("the primary's answer has no SOA for the zone")]
    NoSoa,
    #[error("timed out")]
    TimedOut,
}

/// Starts following the primary of each secondary zone in `zones`.
pub fn follow_primaries(live: &Arc<Live>, zones: &[ZoneArg]) {
    for zone in zones {
        let (Some(primary), Some(apex)) = (
            zone.transfer.primary,
            crate::zone::WireName::from_name(&zone.origin),
        ) else {
            continue;
        };
        let wake = live.responder.secondary_wake(&apex);
        tokio::spawn(follow(
            Arc::downgrade(live),
            zone.origin.clone(),
            zone.file.clone(),
            primary,
            wake,
        ));
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

async fn follow(
    live: Weak<Live>,
    origin: Name,
    file: PathBuf,
    primary: SocketAddr,
    wake: Arc<Notify>,
) {
    loop {
        let Some(alive) = live.upgrade() else {
            return;
        };
        let now = current(&alive, &origin);
        let wait = match refresh(&alive, &origin, &file, primary, now.map(|t| t.serial)).await {
            Ok(()) => current(&alive, &origin).map_or(FIRST_RETRY, |t| t.refresh),
            Err(error) => {
                tracing::warn!(
                    event = "transfer",
                    zone = %origin,
                    primary = %primary,
                    result = "failed",
                    "copying zone {origin} from {primary}: {error}"
                );
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
    primary: SocketAddr,
    serial: Option<u32>,
) -> Result<(), FetchError> {
    let theirs = soa_serial(primary, origin).await?;
    if serial.is_some_and(|ours| !newer(theirs, ours)) {
        return Ok(confirmed(file)?);
    }
    let records = axfr(primary, origin).await?;
    let text = master_file(&records);
    let (live, origin, file) = (live.clone(), origin.clone(), file.to_owned());
    let count = records.len();
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
    tracing::info!(
        event = "transfer",
        zone = %served,
        primary = %primary,
        result = "received",
        serial = theirs,
        "copied zone {served} serial {theirs} from {primary}: {count} records"
    );
    Ok(())
}

/// Serial arithmetic (RFC 1982): whether `a` is after `b`.
fn newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

async fn soa_serial(primary: SocketAddr, origin: &Name) -> Result<u32, FetchError> {
    let mut stream = connect(primary).await?;
    let query = request(origin, RecordType::SOA);
    send(&mut stream, &query).await?;
    let answer = receive(&mut stream, &query).await?;
    answer
        .answers
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or(FetchError::NoSoa)
}

/// The zone's records as AXFR sends them, the closing SOA left out.
async fn axfr(primary: SocketAddr, origin: &Name) -> Result<Vec<Record>, FetchError> {
    let mut stream = connect(primary).await?;
    let query = request(origin, RecordType::AXFR);
    send(&mut stream, &query).await?;
    let mut records: Vec<Record> = Vec::new();
    loop {
        let message = receive(&mut stream, &query).await?;
        for record in message.answers {
            let soa = record.record_type() == RecordType::SOA;
            if soa && !records.is_empty() {
                return Ok(records);
            }
            if records.is_empty() && !soa {
                return Err(FetchError::NoSoa);
            }
            records.push(record);
        }
    }
}

fn request(origin: &Name, record_type: RecordType) -> Message {
    let mut query = Message::query();
    query.add_query(Query::query(origin.clone(), record_type));
    query
}

async fn connect(primary: SocketAddr) -> Result<TcpStream, FetchError> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(primary))
        .await
        .map_err(|_| FetchError::TimedOut)?
        .map_err(FetchError::from)
}

async fn send(stream: &mut TcpStream, message: &Message) -> Result<(), FetchError> {
    stream.write_all(&framed(&message.to_vec()?)).await?;
    Ok(())
}

/// The next message on `stream` that answers `query`.
async fn receive(stream: &mut TcpStream, query: &Message) -> Result<Message, FetchError> {
    let read = async {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await?;
        let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut bytes).await?;
        Ok::<_, FetchError>(Message::from_vec(&bytes)?)
    };
    let message = tokio::time::timeout(EXCHANGE_TIMEOUT, read)
        .await
        .map_err(|_| FetchError::TimedOut)??;
    if message.metadata.id != query.metadata.id
        || message.metadata.message_type != MessageType::Response
    {
        return Err(FetchError::NoSoa);
    }
    if message.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
        return Err(FetchError::Refused(message.metadata.response_code));
    }
    Ok(message)
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
