//! Secondary zones: copied from their primary by AXFR (RFC 5936) first,
//! then by IXFR (RFC 1995) from the version held, falling back to AXFR
//! when the primary's changes do not apply; checked for a new version at
//! the SOA's refresh interval, at once on the primary's NOTIFY, and again
//! after the SOA's retry interval when the primary cannot be reached.
//! Every exchange is signed with the zone's TSIG key when it has one, and
//! an answer whose signature does not hold is dropped. Each copy is
//! written to the zone's file (the last good copy, so that a restart
//! serves at once) and served as a reload of that file is, under the same
//! no-gap rule.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, Query},
    rr::{Name, RData, Record, RecordType, TSigVerifier, rdata::SOA},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
    task::AbortHandle,
};

use super::live::Live;
use crate::{
    cli::ZoneArg,
    server::{TsigKey, framed},
    zone::encode_rdata,
};

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
    #[error("the primary's answer is not signed with the zone's key: {0}")]
    Signature(hickory_proto::ProtoError),
    #[error("the primary's changes do not apply to the copy held: {0}")]
    OutOfStep(String),
    #[error("timed out")]
    TimedOut,
}

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

/// Where a secondary zone comes from, and the key its exchanges are
/// signed with.
#[derive(Clone, Debug)]
struct Primary {
    addr: SocketAddr,
    key: Option<TsigKey>,
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

fn soa_of(record: &Record) -> Option<&SOA> {
    match &record.data {
        RData::SOA(soa) => Some(soa),
        _ => None,
    }
}

async fn soa_serial(source: &Primary, origin: &Name) -> Result<u32, FetchError> {
    let mut exchange = Exchange::start(source, request(origin, RecordType::SOA)).await?;
    let answer = exchange.next().await?;
    answer
        .answers
        .iter()
        .find_map(|record| soa_of(record).map(|soa| soa.serial))
        .ok_or(FetchError::NoSoa)
}

/// The zone's records as AXFR sends them, the closing SOA left out, and
/// how they came.
async fn axfr(source: &Primary, origin: &Name) -> Result<(Vec<Record>, String), FetchError> {
    let mut exchange = Exchange::start(source, request(origin, RecordType::AXFR)).await?;
    let mut records: Vec<Record> = Vec::new();
    loop {
        for record in exchange.next().await?.answers {
            let soa = record.record_type() == RecordType::SOA;
            if soa && !records.is_empty() {
                let how = format!("whole zone by AXFR, {} records", records.len());
                return Ok((records, how));
            }
            if records.is_empty() && !soa {
                return Err(FetchError::NoSoa);
            }
            records.push(record);
        }
    }
}

/// A record's identity within a zone: all of it but the TTL, which an
/// IXFR deletion need not repeat (RFC 1995 leaves it to the primary).
fn identity(record: &Record) -> String {
    format!(
        "{} {} {}",
        record.name.to_ascii().to_ascii_lowercase(),
        record.record_type(),
        record.data
    )
}

/// The zone after the primary's changes since `held` (RFC 1995 §4), SOA
/// first, and how they came. An answer in AXFR form is taken whole.
async fn ixfr(
    source: &Primary,
    held: &crate::zone::Zone,
) -> Result<(Vec<Record>, String), FetchError> {
    let origin = held.origin_name();
    let mut query = request(origin, RecordType::IXFR);
    query.add_authorities(held.soa().records(origin));
    let mut exchange = Exchange::start(source, query).await?;
    let mut changes = Changes::new(held);
    while !changes.complete() {
        for record in exchange.next().await?.answers {
            changes.take(record)?;
        }
        changes.end_of_message();
    }
    Ok(changes.finish())
}

/// An IXFR answer read record by record: either the zone whole (AXFR
/// form) or versions of deletions and additions, applied to the copy held.
struct Changes {
    /// The copy held, by identity, changed as the answer is read.
    zone: std::collections::HashMap<String, Record>,
    /// The answer's first SOA: the version it leads to.
    target: Option<Record>,
    /// Records of an answer in AXFR form.
    whole: Option<Vec<Record>>,
    /// In the incremental form, whether the records now are additions
    /// (as if so before the first version: an SOA there opens deletions).
    adding: bool,
    removed: usize,
    added: usize,
    /// Records read so far.
    read: usize,
    done: bool,
}

impl Changes {
    fn new(held: &crate::zone::Zone) -> Changes {
        let zone = crate::server::records_but_soa(held)
            .into_iter()
            .map(|record| (identity(&record), record))
            .collect();
        Changes {
            zone,
            target: None,
            whole: None,
            adding: true,
            removed: 0,
            added: 0,
            read: 0,
            done: false,
        }
    }

    fn complete(&self) -> bool {
        self.done
    }

    fn target_serial(&self) -> Option<u32> {
        self.target.as_ref().and_then(soa_of).map(|soa| soa.serial)
    }

    fn take(&mut self, record: Record) -> Result<(), FetchError> {
        if self.done {
            return Ok(());
        }
        self.read += 1;
        let serial = soa_of(&record).map(|soa| soa.serial);
        if self.target.is_none() {
            serial.ok_or(FetchError::NoSoa)?;
            self.target = Some(record);
            return Ok(());
        }
        if self.read == 2 && serial.is_none() {
            self.whole = Some(Vec::new());
        }
        if let Some(whole) = &mut self.whole {
            if serial.is_some() {
                self.done = true;
            } else {
                whole.push(record);
            }
            return Ok(());
        }
        match serial {
            // The closing SOA comes where the next version's deletions
            // would start, and carries the version the answer leads to.
            Some(serial) if self.adding && Some(serial) == self.target_serial() => {
                self.done = true;
            }
            Some(_) => self.adding = !self.adding,
            None if self.adding => {
                self.added += 1;
                self.zone.insert(identity(&record), record);
            }
            None => {
                self.removed += 1;
                if self.zone.remove(&identity(&record)).is_none() {
                    return Err(FetchError::OutOfStep(format!(
                        "it removes {} {}, which is not in the copy",
                        record.name,
                        record.record_type()
                    )));
                }
            }
        }
        Ok(())
    }

    /// A message ended: an answer of the SOA alone says the copy is
    /// current.
    fn end_of_message(&mut self) {
        if self.read == 1 {
            self.done = true;
        }
    }

    fn finish(self) -> (Vec<Record>, String) {
        let Some(soa) = self.target else {
            return (Vec::new(), String::new());
        };
        if let Some(whole) = self.whole {
            let how = format!("whole zone by IXFR, {} records", whole.len() + 1);
            return (std::iter::once(soa).chain(whole).collect(), how);
        }
        let how = format!(
            "changes by IXFR, {} removed, {} added",
            self.removed, self.added
        );
        (
            std::iter::once(soa)
                .chain(self.zone.into_values())
                .collect(),
            how,
        )
    }
}

fn request(origin: &Name, record_type: RecordType) -> Message {
    let mut query = Message::query();
    query.add_query(Query::query(origin.clone(), record_type));
    query
}

/// One request to the primary over TCP and its answers, signed and
/// checked with the zone's key when it has one.
struct Exchange {
    stream: TcpStream,
    id: u16,
    verifier: Option<TSigVerifier>,
}

impl Exchange {
    async fn start(source: &Primary, mut query: Message) -> Result<Exchange, FetchError> {
        let verifier = match &source.key {
            Some(key) => Some(key.sign_request(&mut query)?),
            None => None,
        };
        let mut stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(source.addr))
            .await
            .map_err(|_| FetchError::TimedOut)??;
        stream.write_all(&framed(&query.to_vec()?)).await?;
        Ok(Exchange {
            stream,
            id: query.metadata.id,
            verifier,
        })
    }

    /// The next message of the answer.
    async fn next(&mut self) -> Result<Message, FetchError> {
        let stream = &mut self.stream;
        let read = async {
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await?;
            let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut bytes).await?;
            Ok::<_, FetchError>(bytes)
        };
        let bytes = tokio::time::timeout(EXCHANGE_TIMEOUT, read)
            .await
            .map_err(|_| FetchError::TimedOut)??;
        let message = Message::from_vec(&bytes)?;
        if message.metadata.id != self.id || message.metadata.message_type != MessageType::Response
        {
            return Err(FetchError::NoSoa);
        }
        if message.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
            return Err(FetchError::Refused(message.metadata.response_code));
        }
        if let Some(verifier) = &mut self.verifier {
            verifier.verify(&bytes).map_err(FetchError::Signature)?;
        }
        Ok(message)
    }
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

    fn zone(serial: u32, body: &str) -> crate::zone::Zone {
        let origin = Name::from_ascii("example.com.").unwrap();
        let text =
            format!("$TTL 300\n@ SOA ns h {serial} 2 3 4 5\n@ NS ns\nns A 198.18.0.53\n{body}");
        parse_zone(&origin, &text, Path::new("example.com.zone")).unwrap()
    }

    fn soa(zone: &crate::zone::Zone) -> Record {
        zone.soa().records(zone.origin_name()).next().unwrap()
    }

    fn named(zone: &crate::zone::Zone, name: &str) -> Record {
        crate::server::records_but_soa(zone)
            .into_iter()
            .find(|r| r.name.to_ascii() == name)
            .unwrap()
    }

    /// Two versions' changes in one answer (RFC 1995 §7's example shape).
    #[test]
    fn incremental_answers_apply_version_by_version() {
        let held = zone(7, "a A 198.18.0.1\nb A 198.18.0.2\n");
        let middle = zone(8, "b A 198.18.0.2\nc A 198.18.0.3\n");
        let last = zone(9, "c A 198.18.0.3\nd A 198.18.0.4\n");
        let mut changes = Changes::new(&held);
        let answer = [
            soa(&last),
            soa(&held),
            named(&held, "a.example.com."),
            soa(&middle),
            named(&middle, "c.example.com."),
            soa(&middle),
            named(&middle, "b.example.com."),
            soa(&last),
            named(&last, "d.example.com."),
            soa(&last),
        ];
        for record in answer {
            assert!(!changes.complete());
            changes.take(record).unwrap();
        }
        assert!(changes.complete());
        let (records, how) = changes.finish();
        assert_eq!(how, "changes by IXFR, 2 removed, 2 added");
        let copy = parse_zone(
            held.origin_name(),
            &master_file(&records),
            Path::new("copy"),
        )
        .unwrap();
        let shown = |zone: &crate::zone::Zone| {
            let mut all: Vec<String> = crate::server::records_but_soa(zone)
                .iter()
                .map(identity)
                .collect();
            all.sort();
            all
        };
        assert_eq!(shown(&copy), shown(&last));
        assert_eq!(copy.serial(), 9);
    }

    #[test]
    fn an_answer_in_axfr_form_or_of_the_soa_alone_ends_where_it_should() {
        let held = zone(7, "a A 198.18.0.1\n");
        let next = zone(8, "b A 198.18.0.2\n");
        let mut whole = Changes::new(&held);
        let mut records = vec![soa(&next)];
        records.extend(crate::server::records_but_soa(&next));
        records.push(soa(&next));
        for record in records {
            whole.take(record).unwrap();
        }
        assert!(whole.complete());
        assert_eq!(whole.finish().1, "whole zone by IXFR, 4 records");

        let mut current = Changes::new(&held);
        current.take(soa(&held)).unwrap();
        assert!(!current.complete());
        current.end_of_message();
        assert!(current.complete());
    }

    #[test]
    fn a_removal_of_what_the_copy_lacks_is_out_of_step() {
        let held = zone(7, "a A 198.18.0.1\n");
        let other = zone(6, "z A 198.18.0.9\n");
        let mut changes = Changes::new(&held);
        changes.take(soa(&zone(8, ""))).unwrap();
        changes.take(soa(&held)).unwrap();
        let error = changes.take(named(&other, "z.example.com.")).unwrap_err();
        assert!(matches!(error, FetchError::OutOfStep(_)), "{error}");
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
