//! Zone transfers out: AXFR (RFC 5936), and IXFR (RFC 1995) answered with
//! the whole zone, which RFC 1995 §4 allows when no journal covers the
//! client's version (or with the SOA alone when the client is current).
//! Only to the networks a zone allows (`allow_transfer`), and signed with
//! its TSIG key when it has one (`tsig_key`); everyone else gets REFUSED
//! (NOTAUTH with the TSIG error for a bad signature), and a name that is
//! not a zone's apex NOTAUTH.

use std::{collections::HashMap, net::IpAddr};

use hickory_proto::{
    op::{Message, OpCode, ResponseCode},
    rr::{RData, Record, RecordType},
    serialize::binary::BinEncodable,
};

use super::{
    journal::{difference, records_but_soa},
    respond::Responder,
    tsig::{self, TsigKey},
};
use crate::{
    policy::ClientNet,
    zone::{WireName, Zone},
};

/// What the policy file says of a zone's copies elsewhere.
#[derive(Clone, Debug, Default)]
pub struct ZoneTransfer {
    /// For a secondary zone: the primary it is copied from.
    pub primary: Option<std::net::SocketAddr>,
    /// Networks that may transfer it.
    pub allow: Vec<ClientNet>,
    /// Secondaries told of each new version (RFC 1996 NOTIFY).
    pub notify: Vec<std::net::SocketAddr>,
    /// The key that signs its transfers and NOTIFY, both ways.
    pub key: Option<TsigKey>,
    /// What its serial must do when its file changes.
    pub serial: crate::zone::serial::SerialRule,
}

/// Each zone's transfer rules, by apex.
pub type TransferRules = HashMap<WireName, ZoneTransfer>;

/// Most bytes of records a transfer message carries: a message stays well
/// under the 64 KB a TCP frame holds, as Knot's and BIND's do.
const MESSAGE_BUDGET: usize = 16 * 1024;

impl Responder {
    /// The answer to a NOTIFY (RFC 1996): accepted from a secondary zone's
    /// primary (signed with the zone's key, when it has one), whose refresh
    /// it wakes; refused from anyone else.
    pub(super) fn notified(
        &self,
        request: &[u8],
        query: &Message,
        client: IpAddr,
    ) -> Option<Vec<u8>> {
        let mut response = Message::response(query.metadata.id, OpCode::Notify);
        response.add_queries(query.queries.clone());
        let rules = self.transfer_rules();
        let zone = query.queries.first().and_then(|question| {
            let apex = WireName::from_name(question.name())?;
            let rule = rules.get(&apex).filter(|rule| rule.primary.is_some())?;
            Some((apex, rule))
        });
        let refused = |why: &str| {
            self.count_transfer("notify", "in", "refused");
            tracing::warn!(
                event = "notify",
                client = %client,
                result = "refused",
                "refused a NOTIFY from {client}: {why}"
            );
        };
        let Some((apex, rule)) =
            zone.filter(|(_, rule)| rule.primary.map(|a| a.ip()) == Some(client))
        else {
            refused("not the primary of a zone copied here");
            response.metadata.response_code = ResponseCode::Refused;
            return response.to_vec().ok();
        };
        let refusal = response.clone();
        let mut signer = match tsig::authorize(request, query, rule.key.as_ref(), refusal) {
            Ok(signer) => signer,
            Err(refusal) => {
                refused(refusal.why);
                return refusal.answer;
            }
        };
        response.metadata.authoritative = true;
        self.secondary_wake(&apex).notify_one();
        self.count_transfer("notify", "in", "accepted");
        tsig::seal(signer.as_mut(), response)
    }

    /// For a zone-transfer request (AXFR or IXFR, over TCP), the messages
    /// of the answer in order; `None` for any other query.
    pub fn transfer(&self, request: &[u8], client: IpAddr) -> Option<Vec<Vec<u8>>> {
        let query = Message::from_vec(request).ok()?;
        let [question] = query.queries.as_slice() else {
            return None;
        };
        let kind = question.query_type();
        if query.metadata.op_code != OpCode::Query
            || !matches!(kind, RecordType::AXFR | RecordType::IXFR)
        {
            return None;
        }
        let id = query.metadata.id;
        let refuse = |code| {
            let mut response = Message::error_msg(id, OpCode::Query, code);
            response.add_query(question.clone());
            Some(vec![response.to_vec().ok()?])
        };
        let catalog = self.catalog();
        let apex = WireName::from_name(question.name())?;
        let Some(zone) = catalog.get(&apex) else {
            return refuse(ResponseCode::NotAuth);
        };
        let kind_label = kind.to_string().to_ascii_lowercase();
        let refused = |why: &str| {
            self.count_transfer(&kind_label, "out", "refused");
            tracing::warn!(
                event = "transfer",
                zone = %zone.origin_name(),
                client = %client,
                result = "refused",
                "refused {kind} of {} to {client}: {why}",
                zone.origin_name()
            );
        };
        let rules = self.transfer_rules();
        let rule = rules.get(&apex).filter(|rule| {
            rule.allow
                .iter()
                .any(|n| n.contains(ClientNet::host(client)))
        });
        let Some(rule) = rule else {
            refused("not in allow_transfer");
            return refuse(ResponseCode::Refused);
        };
        let mut refusal = Message::error_msg(id, OpCode::Query, ResponseCode::NoError);
        refusal.add_query(question.clone());
        let mut signer = match tsig::authorize(request, &query, rule.key.as_ref(), refusal) {
            Ok(signer) => signer,
            Err(refusal) => {
                refused(refusal.why);
                return Some(vec![refusal.answer?]);
            }
        };
        let client_serial = (kind == RecordType::IXFR)
            .then(|| {
                query
                    .authorities
                    .iter()
                    .find_map(|record| match &record.data {
                        RData::SOA(soa) => Some(soa.serial),
                        _ => None,
                    })
            })
            .flatten();
        // A zone dnslb signs goes whole, from its signed copy: RFC 1995
        // §4 lets IXFR answer with the zone.
        let copy = match zone.is_online() {
            true => match self.signed_copy(&apex, crate::signer::now()) {
                Some(copy) => Some(copy),
                None => {
                    refused("no signed copy of the zone could be made");
                    return refuse(ResponseCode::ServFail);
                }
            },
            false => None,
        };
        let serial = copy.as_ref().map_or(zone.serial(), |copy| copy.serial);
        let kept = client_serial
            .filter(|_| copy.is_none())
            .and_then(|serial| self.journal_version(&apex, serial));
        let (how, records) = match (client_serial, kept, copy) {
            (Some(current), _, copy) if current == serial => (
                "current",
                match copy {
                    Some(copy) => copy.records.iter().take(1).cloned().collect(),
                    None => soa_records(zone).take(1).collect(),
                },
            ),
            (_, _, Some(copy)) => ("signed zone", copy.records.to_vec()),
            (_, Some(old), None) => ("difference", incremental(&old, zone)),
            _ => ("whole zone", whole_zone(zone)),
        };
        self.count_transfer(&kind_label, "out", "sent");
        tracing::info!(
            event = "transfer",
            zone = %zone.origin_name(),
            client = %client,
            result = "sent",
            serial,
            "sent {kind} of {} serial {serial} to {client}: {how}, {} records",
            zone.origin_name(),
            records.len()
        );
        messages(&query, records)
            .into_iter()
            .map(|message| tsig::seal(signer.as_mut(), message))
            .collect()
    }
}

fn soa_records(zone: &Zone) -> impl Iterator<Item = Record> + '_ {
    zone.soa().records(zone.origin_name())
}

/// The zone as AXFR sends it: the SOA, every other record, the SOA again.
fn whole_zone(zone: &Zone) -> Vec<Record> {
    let mut records: Vec<Record> = soa_records(zone).collect();
    records.extend(records_but_soa(zone));
    records.extend(soa_records(zone));
    records
}

/// IXFR's answer from `old` to `zone` (RFC 1995 §4): the new SOA, the old
/// SOA and what was removed, the new SOA and what was added, the new SOA.
fn incremental(old: &Zone, zone: &Zone) -> Vec<Record> {
    let (removed, added) = difference(old, zone);
    let mut records: Vec<Record> = soa_records(zone).collect();
    records.extend(soa_records(old));
    records.extend(removed);
    records.extend(soa_records(zone));
    records.extend(added);
    records.extend(soa_records(zone));
    records
}

/// `records` in as many answers to `query` as the budget takes; the
/// question goes in the first.
fn messages(query: &Message, records: Vec<Record>) -> Vec<Message> {
    let start = |first: bool| {
        let mut message = Message::response(query.metadata.id, OpCode::Query);
        message.metadata.authoritative = true;
        if first {
            message.add_queries(query.queries.clone());
        }
        message
    };
    let mut out = Vec::new();
    let mut message = start(true);
    let mut bytes = 0;
    for record in records {
        // A record that does not encode is as long as the budget: it goes
        // alone, and the encoder reports it.
        let size = record
            .to_bytes()
            .map_or(MESSAGE_BUDGET, |bytes| bytes.len());
        if bytes + size > MESSAGE_BUDGET && !message.answers.is_empty() {
            out.push(std::mem::replace(&mut message, start(false)));
            bytes = 0;
        }
        bytes += size;
        message.add_answer(record);
    }
    out.push(message);
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hickory_proto::{
        op::Query,
        rr::{Name, rdata::SOA},
    };

    use super::*;
    use crate::zone::{Catalog, parse_zone};

    const HOSTS: usize = 2000;

    /// A zone of `HOSTS` names, allowed to 198.18.0.0/24.
    fn responder() -> Responder {
        let mut text = String::from("$TTL 300\n@ SOA ns h 7 2 3 4 5\n@ NS ns\nns A 198.18.0.53\n");
        for n in 0..HOSTS {
            text.push_str(&format!("host{n} A 198.18.{}.{}\n", n / 250, n % 250));
        }
        let origin = Name::from_ascii("example.com.").unwrap();
        let zone = parse_zone(&origin, &text, Path::new("example.com.zone")).unwrap();
        let mut catalog = Catalog::default();
        catalog.insert(zone);
        let responder = Responder::new(catalog, 1232);
        let apex = WireName::from_name(&origin).unwrap();
        let allowed = crate::policy::parse_network("198.18.0.0/24").unwrap();
        let rules = ZoneTransfer {
            allow: vec![allowed],
            ..ZoneTransfer::default()
        };
        responder.set_transfer_rules(TransferRules::from([(apex, rules)]));
        responder
    }

    fn request(name: &str, kind: RecordType, serial: Option<u32>) -> Vec<u8> {
        let mut query = Message::query();
        query.metadata.id = 9;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        if let Some(serial) = serial {
            let soa = SOA::new(Name::root(), Name::root(), serial, 0, 0, 0, 0);
            let owner = Name::from_ascii(name).unwrap();
            query.add_authority(Record::from_rdata(owner, 0, RData::SOA(soa)));
        }
        query.to_vec().unwrap()
    }

    fn answers(messages: &[Vec<u8>]) -> Vec<Record> {
        messages
            .iter()
            .flat_map(|m| Message::from_vec(m).unwrap().answers)
            .collect()
    }

    #[test]
    fn an_allowed_axfr_is_the_whole_zone_between_two_soas_in_bounded_messages() {
        let client = "198.18.0.9".parse().unwrap();
        let messages = responder()
            .transfer(&request("example.com.", RecordType::AXFR, None), client)
            .expect("a transfer");
        assert!(messages.len() > 1, "{} messages", messages.len());
        assert!(messages.iter().all(|m| m.len() < MESSAGE_BUDGET + 512));
        let records = answers(&messages);
        // SOA, NS, ns, the hosts, SOA.
        assert_eq!(records.len(), HOSTS + 4);
        assert_eq!(records[0].record_type(), RecordType::SOA);
        assert_eq!(records[records.len() - 1].record_type(), RecordType::SOA);
        let soas = records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA);
        assert_eq!(soas.count(), 2);
        let first = Message::from_vec(&messages[0]).unwrap();
        assert_eq!(first.metadata.id, 9);
        assert_eq!(first.queries.len(), 1);
        assert!(first.metadata.authoritative);
    }

    #[test]
    fn ixfr_from_the_current_serial_is_the_soa_alone_and_older_the_whole_zone() {
        let client = "198.18.0.9".parse().unwrap();
        let responder = responder();
        let current = responder
            .transfer(&request("example.com.", RecordType::IXFR, Some(7)), client)
            .expect("a transfer");
        let records = answers(&current);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].record_type(), RecordType::SOA);
        let older = responder
            .transfer(&request("example.com.", RecordType::IXFR, Some(6)), client)
            .expect("a transfer");
        assert_eq!(answers(&older).len(), HOSTS + 4);
    }

    #[test]
    fn ixfr_from_a_kept_version_is_only_the_difference() {
        let client = "198.18.0.9".parse().unwrap();
        let responder = responder();
        let origin = Name::from_ascii("example.com.").unwrap();
        let mut text = String::from("$TTL 300\n@ SOA ns h 8 2 3 4 5\n@ NS ns\nns A 198.18.0.53\n");
        // host0 goes, host1 changes address, the rest stay, one is new.
        text.push_str("host1 A 198.18.99.1\nnew TXT \"added\"\n");
        for n in 2..HOSTS {
            text.push_str(&format!("host{n} A 198.18.{}.{}\n", n / 250, n % 250));
        }
        let zone = parse_zone(&origin, &text, Path::new("example.com.zone")).unwrap();
        let mut catalog = Catalog::default();
        catalog.insert(zone);
        responder.set_catalog(catalog);

        let messages = responder
            .transfer(&request("example.com.", RecordType::IXFR, Some(7)), client)
            .expect("a transfer");
        let shown: Vec<String> = answers(&messages)
            .iter()
            .map(|r| match &r.data {
                RData::SOA(soa) => format!("SOA {}", soa.serial),
                other => format!("{} {other}", r.name),
            })
            .collect();
        // New SOA; old SOA and what went; new SOA and what came; new SOA.
        // (Within a part, records come in zone order, which is the map's.)
        let sorted = |part: &[String]| {
            let mut part = part.to_vec();
            part.sort();
            part
        };
        assert_eq!(shown.len(), 8, "{shown:?}");
        assert_eq!(
            [&shown[0], &shown[1], &shown[4], &shown[7]],
            ["SOA 8", "SOA 7", "SOA 8", "SOA 8"]
        );
        assert_eq!(
            sorted(&shown[2..4]),
            [
                "host0.example.com. 198.18.0.0",
                "host1.example.com. 198.18.0.1"
            ]
        );
        assert_eq!(
            sorted(&shown[5..7]),
            ["host1.example.com. 198.18.99.1", "new.example.com. added"]
        );
        // A version the journal never had: the whole zone.
        let unknown = responder
            .transfer(&request("example.com.", RecordType::IXFR, Some(3)), client)
            .expect("a transfer");
        assert_eq!(answers(&unknown).len(), HOSTS + 4);
    }

    #[test]
    fn a_zone_with_a_key_transfers_only_signed_and_signs_every_message() {
        let secret = "c2VjcmV0IHNoYXJlZCBieSBwcmltYXJ5IGFuZCBzZWNvbmRhcnk=";
        let key = TsigKey::new("transfer.", "hmac-sha256", secret).unwrap();
        let responder = responder();
        let mut rules = (*responder.transfer_rules()).clone();
        for rule in rules.values_mut() {
            rule.key = Some(key.clone());
        }
        responder.set_transfer_rules(rules);
        let counts = prometheus::IntCounterVec::new(
            prometheus::Opts::new("transfers", "for the test"),
            &["kind", "direction", "result"],
        )
        .unwrap();
        responder.count_transfers_in(counts.clone());
        let client = "198.18.0.9".parse().unwrap();
        let signed = |with: &TsigKey| {
            let mut query =
                Message::from_vec(&request("example.com.", RecordType::AXFR, None)).unwrap();
            let verifier = with.sign_request(&mut query).unwrap();
            (query.to_vec().unwrap(), verifier)
        };

        let (query, mut verifier) = signed(&key);
        let messages = responder.transfer(&query, client).expect("a transfer");
        assert!(messages.len() > 1);
        for message in &messages {
            verifier.verify(message).expect("every message is signed");
        }
        assert_eq!(answers(&messages).len(), HOSTS + 4);

        let code = |query: &[u8]| {
            let messages = responder.transfer(query, client).expect("an answer");
            Message::from_vec(&messages[0])
                .unwrap()
                .metadata
                .response_code
        };
        let wrong = TsigKey::new("transfer.", "hmac-sha256", "d3Jvbmc=").unwrap();
        assert_eq!(code(&signed(&wrong).0), ResponseCode::NotAuth);
        let unsigned = request("example.com.", RecordType::AXFR, None);
        assert_eq!(code(&unsigned), ResponseCode::Refused);
        let counted = |result: &str| counts.with_label_values(&["axfr", "out", result]).get();
        assert_eq!((counted("sent"), counted("refused")), (1, 2));
    }

    #[test]
    fn others_are_refused_names_below_the_apex_not_authoritative_queries_untouched() {
        let responder = responder();
        let code = |name: &str, client: &str| {
            let messages = responder
                .transfer(
                    &request(name, RecordType::AXFR, None),
                    client.parse().unwrap(),
                )
                .expect("an answer");
            assert_eq!(messages.len(), 1);
            Message::from_vec(&messages[0])
                .unwrap()
                .metadata
                .response_code
        };
        assert_eq!(code("example.com.", "198.18.1.9"), ResponseCode::Refused);
        assert_eq!(code("example.com.", "2001:db8::9"), ResponseCode::Refused);
        assert_eq!(
            code("host1.example.com.", "198.18.0.9"),
            ResponseCode::NotAuth
        );
        assert_eq!(code("example.net.", "198.18.0.9"), ResponseCode::NotAuth);
        let plain = request("example.com.", RecordType::SOA, None);
        assert!(
            responder
                .transfer(&plain, "198.18.0.9".parse().unwrap())
                .is_none()
        );
    }
}
