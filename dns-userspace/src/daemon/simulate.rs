//! "What does this client get?": a query for a name from a client (an
//! address, or a subnet as EDNS Client Subnet carries it) answered by the
//! daemon's own responder, the policy branches behind the answer, and
//! whether the kernel answers it, read from the kernel's maps.

use std::str::FromStr;

use dns_common::HotName;
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{
        Name, RecordType,
        rdata::opt::{ClientSubnet, EdnsOption},
    },
};

use super::live::Live;
use crate::{
    api::{Answer, Refusal, RefusalKind, types::Simulation},
    dataplane::HotType,
    policy::{ClientNet, parse_network},
    zone::WireName,
};

fn invalid(message: impl ToString) -> Refusal {
    Refusal::new(RefusalKind::Invalid, message)
}

fn failed(error: impl std::fmt::Display) -> Refusal {
    Refusal::new(RefusalKind::Failed, error.to_string())
}

impl Live {
    pub fn simulate(&self, name: &str, client: &str, qtype: Option<&str>) -> Answer<Simulation> {
        let mut qname =
            Name::from_ascii(name.trim()).map_err(|e| invalid(format!("name `{name}`: {e}")))?;
        qname.set_fqdn(true);
        let record_type = match qtype.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => RecordType::from_str(&text.to_ascii_uppercase())
                .map_err(|_| invalid(format!("`{text}` is not a record type")))?,
            None => RecordType::A,
        };
        let network = parse_network(client).map_err(invalid)?;
        let (address, prefix) = network.family_address();
        let host = prefix == if address.is_ipv4() { 32 } else { 128 };

        let mut query = Message::query();
        query.metadata.id = 1;
        query.add_query(Query::query(qname.clone(), record_type));
        if !host {
            let mut edns = Edns::new();
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(address, prefix, 0)));
            query.edns = Some(edns);
        }
        let bytes = query.to_vec().map_err(failed)?;
        let answer = self
            .responder
            .simulate(&bytes, address)
            .ok_or_else(|| failed("the responder gave no answer"))?;
        let answer = Message::from_vec(&answer).map_err(failed)?;

        let wire = WireName::from_name(&qname).ok_or_else(|| invalid("not a valid name"))?;
        let decided = self
            .steering
            .decided_by(&wire, record_type, network)
            .map_err(failed)?;
        let (answered_by, reason) = self.kernel_verdict(&wire, record_type, network)?;
        let (service, branches) = match decided {
            Some((service, branches)) => (Some(service), branches),
            None => (None, Vec::new()),
        };
        Ok(Simulation {
            name: qname.to_string(),
            qtype: record_type.to_string(),
            client: network.to_string(),
            rcode: answer.metadata.response_code.to_string(),
            answers: answer.answers.iter().map(ToString::to_string).collect(),
            service,
            branches,
            answered_by: answered_by.to_owned(),
            reason,
        })
    }

    /// Who answers the query, and why: looked up in the kernel's maps as
    /// the program does for a plain query (or one with DO, a cookie or
    /// Client Subnet, which it answers alike).
    fn kernel_verdict(
        &self,
        name: &WireName,
        record_type: RecordType,
        client: ClientNet,
    ) -> Answer<(&'static str, String)> {
        let Some(dataplane) = &self.dataplane else {
            return Ok(("daemon", "XDP is off (--no-xdp)".to_owned()));
        };
        let Some(hot_type) = HotType::of(record_type) else {
            return Ok((
                "daemon",
                format!("the kernel answers A and AAAA only, not {record_type}"),
            ));
        };
        let Some(hot_name) = HotName::from_wire(name.as_bytes()) else {
            return Ok(("daemon", "the name is longer than the kernel holds".into()));
        };
        let dataplane = dataplane.lock().map_err(failed)?;
        let value = dataplane
            .kernel_value(&hot_name, hot_type, client.octets(), client.prefix_len())
            .map_err(failed)?;
        Ok(match value {
            Some(value) if value.answers_in_kernel() => (
                "kernel",
                format!("the kernel holds its {record_type} answer and sends it with XDP_TX"),
            ),
            Some(_) => (
                "daemon",
                "the kernel holds the name but passes it on: its answer has no kernel form \
                 (a weighted choice between sets), waits for a cold start, or did not fit"
                    .to_owned(),
            ),
            None => (
                "daemon",
                "not in the kernel's maps: the daemon answers (a name the zones do not \
                 hold in the kernel, a referral, a wildcard, or NXDOMAIN)"
                    .to_owned(),
            ),
        })
    }
}
