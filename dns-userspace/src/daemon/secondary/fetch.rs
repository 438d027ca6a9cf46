//! Fetching a secondary zone from its primary over TCP: its serial (an
//! SOA query), the whole zone (AXFR, RFC 5936), or the changes since the
//! copy held (IXFR, RFC 1995). Every exchange is signed with the zone's
//! TSIG key when it has one, and an answer whose signature does not hold
//! is dropped.

use std::{net::SocketAddr, time::Duration};

use hickory_proto::{
    op::{Message, MessageType, Query},
    rr::{Name, RData, Record, RecordType, TSigVerifier, rdata::SOA},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::server::{TsigKey, framed};

/// How long one exchange with the primary may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
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

/// Where a secondary zone comes from, and the key its exchanges are
/// signed with.
#[derive(Clone, Debug)]
pub(super) struct Primary {
    pub(super) addr: SocketAddr,
    pub(super) key: Option<TsigKey>,
}

pub(super) fn soa_of(record: &Record) -> Option<&SOA> {
    match &record.data {
        RData::SOA(soa) => Some(soa),
        _ => None,
    }
}

pub(super) async fn soa_serial(source: &Primary, origin: &Name) -> Result<u32, FetchError> {
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
pub(super) async fn axfr(
    source: &Primary,
    origin: &Name,
) -> Result<(Vec<Record>, String), FetchError> {
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
pub(super) async fn ixfr(
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::zone::parse_zone;

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
            &super::super::master_file(&records),
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
}
