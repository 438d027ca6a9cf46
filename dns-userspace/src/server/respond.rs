//! From a query's bytes to the answer's bytes: the authoritative logic,
//! independent of transport.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Message, OpCode, ResponseCode},
    rr::rdata::opt::{EdnsCode, EdnsOption},
    rr::{DNSClass, Name, RData, Record, RecordType},
};

use dns_common::{
    cookie::{CookieAddr, CookieSecrets, le_words},
    wire::{CLASSIC_UDP_PAYLOAD, FLAGS0_QR, HEADER_LEN, SERVER_COOKIE_LEN},
};

use super::{
    cookies::unix_now,
    edns::{self, Cookie, QueryOptions},
    fast::PlainQuery,
};
use super::{
    dnssec::{Dnssec, types_at},
    journal::Journal,
    signed_copy::SignedCopies,
    transfer::TransferRules,
};
use crate::{
    backends::ColdStart,
    dataplane::RrsetSigner,
    policy::ClientNet,
    signer::{
        ZoneSigner,
        denial::{EDNS_FLAG_CO, NXNAME},
    },
    steering::{Asked, Steered, SteeredSink},
    zone::{
        Catalog, Lookup, Rrset, WireName, Zone, additional_target, address_rdata, dnssec::Proof,
        wire,
    },
};

/// CNAME links followed within one answer before stopping.
const MAX_ALIAS_CHAIN: usize = 8;

/// The transport a query came over: it decides the size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Answers queries from the current catalog.
pub struct Responder {
    catalog: ArcSwap<Catalog>,
    /// The policy-file services, which answer their names' A or AAAA
    /// queries ahead of the zones.
    steered: ArcSwap<Steered>,
    edns_payload: u16,
    /// Advances with each answer that rotates an RRset, as the kernel does.
    rotation: AtomicUsize,
    /// The server cookie secrets, the same the kernel has.
    cookies: ArcSwap<CookieSecrets>,
    /// Who may transfer which zone.
    transfers: ArcSwap<TransferRules>,
    /// Earlier versions of the transferable zones, for IXFR.
    journal: std::sync::Mutex<Journal>,
    /// What wakes each secondary zone's refresh: kept here, by apex, so
    /// that a NOTIFY finds it across reloads of the policy file.
    wakes: std::sync::Mutex<HashMap<WireName, Arc<tokio::sync::Notify>>>,
    /// `dnslb_zone_transfers_total`, once the daemon gives it.
    transfer_counts: std::sync::OnceLock<prometheus::IntCounterVec>,
    /// The signers of the zones dnslb signs, by apex.
    signers: ArcSwap<Signers>,
    /// The signed copies of zones dnslb signs for their secondaries; its
    /// lock also keeps the catalog's writers one at a time, as a copy
    /// changes a zone's serial.
    pub(super) copies: std::sync::Mutex<SignedCopies>,
}

/// The signers of the zones dnslb signs, by apex (lowercase wire form).
pub type Signers = HashMap<WireName, Arc<ZoneSigner>>;

impl Responder {
    pub fn new(catalog: Catalog, edns_payload: u16) -> Responder {
        Responder {
            catalog: ArcSwap::from_pointee(catalog),
            steered: ArcSwap::from_pointee(Steered::default()),
            edns_payload,
            rotation: AtomicUsize::new(0),
            cookies: ArcSwap::from_pointee(CookieSecrets::default()),
            transfers: ArcSwap::from_pointee(TransferRules::default()),
            journal: std::sync::Mutex::new(Journal::default()),
            wakes: std::sync::Mutex::new(HashMap::new()),
            transfer_counts: std::sync::OnceLock::new(),
            signers: ArcSwap::from_pointee(Signers::default()),
            copies: std::sync::Mutex::new(SignedCopies::default()),
        }
    }

    /// Counts transfers and NOTIFY in `counts` (kind, direction, result).
    pub fn count_transfers_in(&self, counts: prometheus::IntCounterVec) {
        let _ = self.transfer_counts.set(counts);
    }

    /// Counts one transfer or NOTIFY.
    pub fn count_transfer(&self, kind: &str, direction: &str, result: &str) {
        if let Some(counts) = self.transfer_counts.get() {
            counts.with_label_values(&[kind, direction, result]).inc();
        }
    }

    /// The counter of transfers and NOTIFY, for the senders of NOTIFY.
    pub fn transfer_counts(&self) -> Option<prometheus::IntCounterVec> {
        self.transfer_counts.get().cloned()
    }

    /// Transfers each zone as `rules` say, from the next request on.
    pub fn set_transfer_rules(&self, rules: TransferRules) {
        self.transfers.store(Arc::new(rules));
    }

    /// What wakes the refresh of the secondary zone `origin`.
    pub fn secondary_wake(&self, origin: &WireName) -> Arc<tokio::sync::Notify> {
        // A poisoned map only loses wake-ups; refreshes still run.
        match self.wakes.lock() {
            Ok(mut wakes) => wakes.entry(origin.clone()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// The version of `origin` that had `serial`, if the journal keeps it.
    pub(super) fn journal_version(&self, origin: &WireName, serial: u32) -> Option<Arc<Zone>> {
        self.journal.lock().ok()?.version(origin, serial)
    }

    pub fn transfer_rules(&self) -> Arc<TransferRules> {
        self.transfers.load_full()
    }

    /// Makes and checks server cookies with `secrets` from now on.
    pub fn set_cookie_secrets(&self, secrets: CookieSecrets) {
        self.cookies.store(Arc::new(secrets));
    }

    /// The cookie option's data for an answer to `cookie` from `client`:
    /// the client cookie, then the server cookie it sent if that is valid
    /// and recent, else a fresh one (`dns_common::cookie`, as the kernel).
    fn cookie_reply(&self, cookie: &Cookie, client: IpAddr) -> Vec<u8> {
        let ([stamp, hash], _) = self.server_cookie(cookie, client);
        [cookie.client, stamp.to_le_bytes(), hash.to_le_bytes()].concat()
    }

    /// The server cookie for an answer to `cookie`, and whether it is the
    /// one the client sent (valid and recent: echoed).
    fn server_cookie(&self, cookie: &Cookie, client: IpAddr) -> ([u64; 2], bool) {
        let secrets = self.cookies.load();
        let addr = match client.to_canonical() {
            IpAddr::V4(v4) => CookieAddr::V4(v4.octets()),
            IpAddr::V6(v6) => CookieAddr::V6(v6.octets()),
        };
        let received = <[u8; SERVER_COOKIE_LEN]>::try_from(&cookie.server[..])
            .ok()
            .map(le_words);
        let reply = secrets.reply(
            unix_now(),
            u64::from_le_bytes(cookie.client),
            received,
            addr,
        );
        (reply, received == Some(reply))
    }

    /// Whether `request` carries a server cookie this server would echo:
    /// the client has had our answers before, so its address is not
    /// spoofed. The rate limit lets such clients through, as the kernel
    /// does.
    pub fn has_valid_cookie(&self, request: &[u8], client: IpAddr) -> bool {
        match edns::read(request) {
            Ok(QueryOptions {
                cookie: Some(cookie),
            }) => self.server_cookie(&cookie, client).1,
            _ => false,
        }
    }

    /// The signers of the zones dnslb signs.
    pub fn signers(&self) -> Arc<Signers> {
        self.signers.load_full()
    }

    /// Sets the signers; before the catalog whose zones they sign.
    pub fn set_signers(&self, signers: Signers) {
        self.signers.store(Arc::new(signers));
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Serves `catalog` from the next query on; queries in flight finish
    /// with the one they started with.
    pub fn set_catalog(&self, catalog: Catalog) {
        // A poisoned lock only means a copy's serial is not applied.
        let copies = self.copies.lock();
        let catalog = match &copies {
            Ok(copies) => self.with_copy_serials(copies, catalog),
            Err(_) => catalog,
        };
        let old = self.catalog.load_full();
        let rules = self.transfer_rules();
        // A zone dnslb signs is transferred from its signed copy instead.
        let transferable = |origin: &WireName| {
            rules.get(origin).is_some_and(|r| !r.allow.is_empty())
                && catalog.get(origin).is_some_and(|zone| !zone.is_online())
        };
        // A poisoned journal only costs secondaries whole transfers.
        if let Ok(mut journal) = self.journal.lock() {
            journal.record(&old, &catalog, transferable);
        }
        self.store_catalog(catalog);
    }

    /// Serves `catalog`; the caller holds the copies' lock.
    pub(super) fn store_catalog(&self, catalog: Catalog) {
        self.catalog.store(Arc::new(catalog));
    }

    /// The services as answers see them now.
    pub fn steered(&self) -> Arc<Steered> {
        self.steered.load_full()
    }

    /// The cold start a query should wait for before it is answered: a
    /// question for a service whose function pool is starting and holds
    /// its queries. Costs nothing while no pool holds.
    pub fn cold_hold(&self, request: &[u8]) -> Option<Arc<ColdStart>> {
        let steered = self.steered.load();
        if !steered.holds_any() {
            return None;
        }
        let mut name = [0u8; 255];
        let len = wire::read_lowercase(request.get(HEADER_LEN..)?, &mut name)?;
        let at = HEADER_LEN + len;
        let qtype = request.get(at..at + 2)?;
        let record_type = RecordType::from(u16::from_be_bytes([qtype[0], qtype[1]]));
        steered.hold(&name[..len], record_type)
    }

    /// Answers one DNS message from `client`. `None` means no answer at
    /// all: responses, and garbage too short to carry an ID, are dropped.
    pub fn respond(&self, request: &[u8], client: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        let mut answer = Vec::new();
        self.respond_into(request, client, transport, &mut answer)
            .then_some(answer)
    }

    /// As [`Responder::respond`], into `answer`, whose allocation a server
    /// reuses from one query to the next. Returns whether there is one.
    pub fn respond_into(
        &self,
        request: &[u8],
        client: IpAddr,
        transport: Transport,
        answer: &mut Vec<u8>,
    ) -> bool {
        let steered = self.steered.load();
        let plain = PlainQuery::parse(request)
            .filter(|query| steered.is_empty() || !steered.has_name(query.name()));
        if let Some(query) = plain {
            let max_len = (transport == Transport::Tcp).then_some(u16::MAX as usize);
            // The turn is taken only by an answer made here: the general
            // path takes its own, and a query must turn the rotation once.
            let rotation = self.rotation.load(Ordering::Relaxed);
            let catalog = self.catalog.load();
            let signers = self.signers.load();
            if query
                .answer_into(
                    answer,
                    (&catalog, &signers),
                    self.edns_payload,
                    max_len,
                    rotation,
                )
                .is_some()
            {
                self.rotation.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        match self.respond_in_general(request, client, transport, Asked::ByClient) {
            Some(general) => {
                *answer = general;
                true
            }
            None => false,
        }
    }

    /// The answer `request` from `client` would get over TCP, as the
    /// simulator shows it: nothing is counted, no rotation turns, no cold
    /// start is woken.
    pub fn simulate(&self, request: &[u8], client: IpAddr) -> Option<Vec<u8>> {
        self.respond_in_general(request, client, Transport::Tcp, Asked::BySimulation)
    }

    /// The general path: any message, through hickory's decoder and encoder.
    fn respond_in_general(
        &self,
        request: &[u8],
        client: IpAddr,
        transport: Transport,
        asked: Asked,
    ) -> Option<Vec<u8>> {
        if request.len() < HEADER_LEN || request[2] & FLAGS0_QR != 0 {
            return None;
        }
        let Ok(options) = edns::read(request) else {
            return edns::formerr(request, self.edns_payload);
        };
        // A message that does not parse, or asks several questions, gets no
        // answer at all, as from Knot DNS: there is nothing sound to echo.
        let Ok(query) = Message::from_vec(request) else {
            return None;
        };
        if query.queries.len() > 1 {
            return None;
        }
        if query.metadata.op_code == OpCode::Notify {
            return self.notified(request, &query, client);
        }
        let subnet =
            query
                .edns
                .as_ref()
                .and_then(|edns| match edns.options().get(EdnsCode::Subnet) {
                    Some(EdnsOption::Subnet(subnet)) => Some(*subnet),
                    _ => None,
                });
        let client_addr = client;
        let client = match &subnet {
            Some(subnet) => ClientNet::new(subnet.addr(), subnet.source_prefix()),
            None => ClientNet::host(client),
        };
        let asking = Asking {
            client,
            asked,
            dnssec_ok: query
                .edns
                .as_ref()
                .is_some_and(|edns| edns.flags().dnssec_ok),
            compact_ok: query
                .edns
                .as_ref()
                .is_some_and(|edns| edns.flags().z & EDNS_FLAG_CO != 0),
        };
        let (mut response, scope) = self.answer(&query, asking);
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.checking_disabled = query.metadata.checking_disabled;
        // Encoded in lowercase, with the client's letter case put back into
        // the question afterwards: hickory compresses only names that match
        // byte for byte, and the answers' names would otherwise not compress
        // against a question in mixed case (Knot DNS compresses regardless
        // of case, and answers must fit as its answers do).
        response.add_queries(query.queries.iter().map(|question| {
            let mut question = question.clone();
            question.name = question.name.to_lowercase();
            question
        }));

        let mut limit = usize::from(CLASSIC_UDP_PAYLOAD);
        if let Some(edns) = &query.edns {
            let mut opt = Edns::new();
            opt.set_max_payload(self.edns_payload);
            // RFC 3225: the DO bit is copied into the answer; RFC 9824
            // §4: so is CO, with DO.
            opt.set_dnssec_ok(edns.flags().dnssec_ok);
            if asking.dnssec_ok && asking.compact_ok {
                opt.flags_mut().z |= EDNS_FLAG_CO;
            }
            // The cookie first, then the Client Subnet: the kernel's order.
            if let Some(cookie) = &options.cookie {
                let data = self.cookie_reply(cookie, client_addr);
                opt.options_mut()
                    .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), data));
            }
            // RFC 7871 §7.2.1: the option comes back with the prefix the
            // answer was decided by; 0 when it does not depend on the client.
            if let Some(mut echo) = subnet {
                echo.set_scope_prefix(scope.unwrap_or(0));
                opt.options_mut().insert(EdnsOption::Subnet(echo));
            }
            response.edns = Some(opt);
            limit = limit.max(edns.max_payload().min(self.edns_payload) as usize);
        }
        if transport == Transport::Tcp {
            limit = u16::MAX as usize;
        }
        let mut bytes = response.to_vec().ok()?;
        if bytes.len() > limit {
            bytes = truncate(response, limit)?;
        }
        restore_question_case(&mut bytes, request);
        Some(bytes)
    }

    /// The answer, and the ECS scope it was decided by (if it depends on
    /// the client's network).
    fn answer(&self, query: &Message, asking: Asking) -> (Message, Option<u8>) {
        let id = query.metadata.id;
        let op_code = query.metadata.op_code;
        let error = |code| (Message::error_msg(id, op_code, code), None);
        if op_code != OpCode::Query {
            return error(ResponseCode::NotImp);
        }
        if query.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            return error(ResponseCode::BADVERS);
        }
        // No question at all: FORMERR.
        let [question] = query.queries.as_slice() else {
            return error(ResponseCode::FormErr);
        };
        if question.query_class() != DNSClass::IN {
            return error(ResponseCode::Refused);
        }
        let catalog = self.catalog.load();
        let Some(name) = WireName::from_name(question.name()) else {
            return error(ResponseCode::FormErr);
        };
        let Some(zone) = catalog.find(name.as_bytes()) else {
            return error(ResponseCode::Refused);
        };
        // RFC 9824 §3.5: NXNAME is only ever in a compact denial's bitmap.
        if question.query_type() == NXNAME && zone.is_online() {
            return error(ResponseCode::FormErr);
        }
        self.answer_from_zone(query, &catalog, zone, name.as_bytes(), asking)
    }

    /// The answer to `query` (one question, for `name` in `zone`) from the
    /// zones and services held, following aliases; with the ECS scope when
    /// a client-dependent service decided it.
    fn answer_from_zone(
        &self,
        query: &Message,
        catalog: &Catalog,
        zone: &Zone,
        name: &[u8],
        asking: Asking,
    ) -> (Message, Option<u8>) {
        let Asking {
            client,
            asked,
            dnssec_ok,
            compact_ok,
        } = asking;
        let signers = self.signers.load();
        let now = crate::signer::now();
        let Some(question) = query.queries.first() else {
            return (
                Message::error_msg(query.metadata.id, OpCode::Query, ResponseCode::FormErr),
                None,
            );
        };
        let steered = self.steered.load();
        let mut response = Message::response(query.metadata.id, OpCode::Query);
        response.metadata.authoritative = true;
        let record_type = question.query_type();
        // The first owner is the name as the client wrote it (so the answer
        // compresses onto the question, as the kernel's does); after an
        // alias, the alias's target.
        let mut owner = question.name().to_lowercase();
        let mut current = WireName::from(name);
        let mut zone = zone;
        let mut followed: Vec<WireName> = Vec::new();
        loop {
            let dnssec = Self::dnssec_of(&signers, zone, dnssec_ok, now);
            let signer = dnssec.signer();
            // A service owns its name's A or AAAA answers, also at the end
            // of an alias chain.
            let served = steered.answer(
                current.as_bytes(),
                record_type,
                client,
                &self.rotation,
                asked,
            );
            if let Some(answer) = served {
                if answer.servfail {
                    response.metadata.response_code = ResponseCode::ServFail;
                    return (response, answer.scope);
                }
                let rdatas: Vec<RData> = answer.addrs.iter().copied().map(address_rdata).collect();
                // The set the policy returned is what is signed: its order
                // aside, the same set finds the same signatures.
                let rrsigs = dnssec.rrsigs(
                    zone,
                    current.as_bytes(),
                    &owner,
                    record_type,
                    answer.ttl,
                    &rdatas,
                );
                response.add_answers(
                    rdatas
                        .into_iter()
                        .map(|rdata| Record::from_rdata(owner.clone(), answer.ttl, rdata)),
                );
                response.add_answers(rrsigs);
                if answer.addrs.is_empty() {
                    response.add_authorities(dnssec.negative_soa(zone));
                    let types = self.types_at(zone, &steered, &current, record_type, signer, now);
                    response.add_authorities(dnssec.denial(
                        zone,
                        current.as_bytes(),
                        &owner,
                        Proof::NoData,
                        &types,
                    ));
                }
                return (response, answer.scope);
            }
            // The apex's keys, of a zone dnslb signs.
            if let Some(signer) = signer
                && current == *zone.origin()
                && let Some(keys) = signer.apex_keys(record_type, now)
                && !keys.is_empty()
            {
                let ttl = signer.policy().dnskey_ttl;
                let rrsigs =
                    dnssec.rrsigs(zone, current.as_bytes(), &owner, record_type, ttl, &keys);
                response.add_answers(
                    keys.into_iter()
                        .map(|rdata| Record::from_rdata(owner.clone(), ttl, rdata)),
                );
                response.add_answers(rrsigs);
                return (response, None);
            }
            // Where a zone signed elsewhere holds the answer's RRSIGs: at
            // the name, or at the wildcard that answered for it. Online,
            // a wildcard's answer is signed as the name's own.
            let from_wildcard = zone.node(current.as_bytes()).is_none();
            let signed_at = match (dnssec, from_wildcard) {
                (Dnssec::Presigned, true) => zone.wildcard_owner(current.as_bytes()),
                _ => current.clone(),
            };
            let signatures =
                |set: &Rrset| dnssec.set_rrsigs(zone, signed_at.as_bytes(), &owner, set);
            let proof = |proof, types: &[RecordType]| {
                dnssec.denial(zone, current.as_bytes(), &owner, proof, types)
            };
            match zone.lookup(current.as_bytes(), record_type) {
                Lookup::Answer(set) if set.record_type() == RecordType::RRSIG => {
                    if let Some((rrsig, ttl)) = zone.rrsig_answer(current.as_bytes()) {
                        response.add_answer(Record::from_rdata(owner.clone(), ttl, rrsig));
                    }
                    if from_wildcard {
                        response.add_authorities(proof(Proof::WildcardAnswer, &[]));
                    }
                }
                Lookup::Answer(set) => {
                    let rotate = matches!(set.record_type(), RecordType::A | RecordType::AAAA);
                    response.add_answers(self.owned_by(&owner, set, rotate));
                    response.add_answers(signatures(set));
                    // A wildcard's own NSEC, sent as the answer, spans the
                    // name already (as Knot DNS answers it).
                    if from_wildcard && record_type != RecordType::NSEC {
                        response.add_authorities(proof(Proof::WildcardAnswer, &[]));
                    }
                    response.add_additionals(additional_addresses(zone, set, dnssec));
                }
                Lookup::Alias(cname) => {
                    response.add_answers(self.owned_by(&owner, cname, false));
                    response.add_answers(signatures(cname));
                    if from_wildcard {
                        response.add_authorities(proof(Proof::WildcardAnswer, &[]));
                    }
                    let target = cname.rdatas().iter().find_map(|rdata| match rdata {
                        RData::CNAME(target) => Some(target.0.clone()),
                        _ => None,
                    });
                    followed.push(current.clone());
                    // Follow the chain through the zones held here, and stop
                    // at a loop or after a bounded number of links.
                    let next =
                        target.and_then(|target| Some((WireName::from_name(&target)?, target)));
                    if let Some((wire, target)) = next
                        && !followed.contains(&wire)
                        && followed.len() < MAX_ALIAS_CHAIN
                        && let Some(next_zone) = catalog.find(wire.as_bytes())
                    {
                        zone = next_zone;
                        current = wire;
                        owner = target;
                        continue;
                    }
                }
                Lookup::Delegation(cut, ns) => {
                    // A referral; after an alias, the answer ends at the cut.
                    if followed.is_empty() {
                        response.metadata.authoritative = false;
                        let cut_name = cut.to_name();
                        response.add_authorities(ns.records(&cut_name));
                        // The child's DS and its signatures, or proof that
                        // it has none (RFC 4035 §3.1.4).
                        if dnssec.is_on() {
                            let cut_wire = cut.as_bytes();
                            match zone.node(cut_wire).and_then(|n| n.rrset(RecordType::DS)) {
                                Some(ds) => {
                                    response.add_authorities(ds.records(&cut_name));
                                    response.add_authorities(
                                        dnssec.set_rrsigs(zone, cut_wire, &cut_name, ds),
                                    );
                                }
                                None => {
                                    response.add_authorities(dnssec.denial(
                                        zone,
                                        cut_wire,
                                        &cut_name,
                                        Proof::NoDs,
                                        &types_at(zone, cut),
                                    ));
                                }
                            }
                        }
                        response.add_additionals(additional_addresses(zone, ns, dnssec));
                    }
                }
                Lookup::NoData => {
                    response.add_authorities(dnssec.negative_soa(zone));
                    let at = match from_wildcard {
                        true => zone.wildcard_owner(current.as_bytes()),
                        false => current.clone(),
                    };
                    let types = self.types_at(zone, &steered, &at, record_type, signer, now);
                    response.add_authorities(proof(
                        match from_wildcard {
                            true => Proof::WildcardNoData,
                            false => Proof::NoData,
                        },
                        &types,
                    ));
                }
                // A name that only a service gives: it exists, without
                // records of this type.
                Lookup::NxDomain if steered.has_name(current.as_bytes()) => {
                    response.add_authorities(dnssec.negative_soa(zone));
                    if signer.is_some() {
                        let types =
                            self.types_at(zone, &steered, &current, record_type, signer, now);
                        response.add_authorities(proof(Proof::NoData, &types));
                    }
                }
                Lookup::NxDomain => {
                    // RFC 9824: online, a missing name is NOERROR with its
                    // NSEC, unless the resolver asked for NXDOMAIN (CO).
                    let compact = signer.is_some() && !compact_ok;
                    if !compact {
                        response.metadata.response_code = ResponseCode::NXDomain;
                    }
                    response.add_authorities(dnssec.negative_soa(zone));
                    response.add_authorities(proof(Proof::NxDomain, &[]));
                }
            }
            return (response, None);
        }
    }

    /// How `zone`'s records in an answer to a query with(out) DO are
    /// signed.
    fn dnssec_of<'s>(signers: &'s Signers, zone: &Zone, dnssec_ok: bool, now: u64) -> Dnssec<'s> {
        if !dnssec_ok {
            return Dnssec::Off;
        }
        match signers.get(zone.origin().as_bytes()) {
            Some(signer) if zone.is_online() => Dnssec::Online(signer, now),
            _ if zone.is_presigned() => Dnssec::Presigned,
            _ => Dnssec::Off,
        }
    }

    /// The types `name` has for a NODATA proof: its RRsets, the services
    /// answering there, the apex's keys, less `asked` (which it has no
    /// answer of now).
    fn types_at(
        &self,
        zone: &Zone,
        steered: &Steered,
        name: &WireName,
        asked: RecordType,
        signer: Option<&ZoneSigner>,
        now: u64,
    ) -> Vec<RecordType> {
        let mut types = types_at(zone, name);
        types.extend(steered.types_at(name.as_bytes()));
        if let Some(signer) = signer
            && name == zone.origin()
        {
            types.extend(signer.apex_types(now));
        }
        types.retain(|t| *t != asked);
        types
    }

    /// The RRset's records owned by `owner`, optionally rotated.
    fn owned_by(&self, owner: &Name, set: &Rrset, rotate: bool) -> Vec<Record> {
        let mut records: Vec<Record> = set.records(owner).collect();
        if rotate && records.len() > 1 {
            let turn = self.rotation.fetch_add(1, Ordering::Relaxed) % records.len();
            records.rotate_left(turn);
        }
        records
    }
}

impl SteeredSink for Responder {
    fn set_steered(&self, steered: Steered) {
        self.steered.store(Arc::new(steered));
    }

    fn signer_for(&self, name: &[u8]) -> Option<Arc<dyn RrsetSigner + Send + Sync>> {
        let catalog = self.catalog.load();
        let zone = catalog.find(name).filter(|zone| zone.is_online())?;
        let signer = self.signers.load().get(zone.origin())?.clone();
        Some(signer)
    }
}

/// Who asks, and what for: the client's network, whether the answer
/// counts, and whether DNSSEC records are wanted (DO).
#[derive(Clone, Copy, Debug)]
struct Asking {
    client: ClientNet,
    asked: Asked,
    dnssec_ok: bool,
    /// The EDNS flag CO: NXDOMAIN is taken with a compact denial.
    compact_ok: bool,
}

/// The A and AAAA records of the names an NS, MX or SRV RRset points at,
/// where the zone holds them: the additional section (RFC 1035 §3.3.9,
/// RFC 2782), glue included; each with its RRSIGs when `dnssec` is on
/// (RFC 4035 §3.1.1: glue, at or below a zone cut, has none).
fn additional_addresses(zone: &Zone, set: &Rrset, dnssec: Dnssec<'_>) -> Vec<Record> {
    set.rdatas()
        .iter()
        .filter_map(additional_target)
        .flat_map(|target| {
            let wire = WireName::from_name(target);
            let node = wire.as_ref().and_then(|wire| zone.node(wire.as_bytes()));
            let authoritative = wire
                .as_ref()
                .is_some_and(|wire| zone.delegation(wire.as_bytes()).is_none());
            [RecordType::A, RecordType::AAAA]
                .into_iter()
                .filter_map(move |record_type| node.and_then(|node| node.rrset(record_type)))
                .flat_map(|set| {
                    let mut records: Vec<Record> = set.records(target).collect();
                    if authoritative && let Some(wire) = &wire {
                        records.extend(dnssec.set_rrsigs(zone, wire.as_bytes(), target, set));
                    }
                    records
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Copies the question name of `request` over the answer's, which has the
/// same length and place (offset 12, uncompressed) but was encoded in
/// lowercase; names compressed onto it then read in the client's case, as
/// from Knot DNS.
fn restore_question_case(answer: &mut [u8], request: &[u8]) {
    let mut name = [0u8; 255];
    let Some(len) = request
        .get(HEADER_LEN..)
        .and_then(|question| wire::read_lowercase(question, &mut name))
    else {
        return;
    };
    let (Some(original), Some(encoded)) = (
        request.get(HEADER_LEN..HEADER_LEN + len),
        answer.get_mut(HEADER_LEN..HEADER_LEN + len),
    ) else {
        return;
    };
    if encoded.eq_ignore_ascii_case(original) {
        encoded.copy_from_slice(original);
    }
}

/// An answer that does not fit `limit`, made to fit as Knot DNS does.
/// Additional records are a courtesy (RFC 2181 §9): the RRsets that fit
/// are kept, without TC. If the answer and authority sections do not
/// fit, TC is set and the record sections are emptied, telling the client
/// to ask again over TCP; the question and OPT always fit, since the query
/// that carried them was no larger.
fn truncate(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    let additionals = std::mem::take(&mut response.additionals);
    let mut fitting = response.to_vec().ok()?;
    if fitting.len() <= limit {
        // Whole RRsets, in order; one that does not fit is skipped and the
        // next ones still tried, as Knot DNS fills the section.
        for rrset in
            additionals.chunk_by(|a, b| a.name == b.name && a.record_type() == b.record_type())
        {
            let kept = response.additionals.len();
            response.additionals.extend_from_slice(rrset);
            match response.to_vec() {
                Ok(bytes) if bytes.len() <= limit => fitting = bytes,
                _ => response.additionals.truncate(kept),
            }
        }
        return Some(fitting);
    }
    truncated(response).filter(|bytes| bytes.len() <= limit)
}

/// `response` with TC set and no records but the OPT record: ask again
/// over TCP.
fn truncated(mut response: Message) -> Option<Vec<u8>> {
    response.metadata.truncation = true;
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response.to_vec().ok()
}

/// The truncated form of `answer` the rate limit slips through instead of
/// it, as the kernel does: header, question and OPT record, TC set.
pub fn slip(answer: &[u8]) -> Option<Vec<u8>> {
    truncated(Message::from_vec(answer).ok()?)
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

    use hickory_proto::{op::Query, rr::Name};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    use super::*;
    use crate::zone::parse_zone;

    const ZONE: &str = "$TTL 300
@       SOA  ns1 hostmaster 1 7200 3600 1209600 60
        NS   ns1
ns1     A    192.0.2.53
www     A    192.0.2.1
        A    192.0.2.2
        AAAA 2001:db8::1
mail    MX   10 mx.Example.COM.
mx      A    192.0.2.25
txt     TXT  \"hello world\"
alias   CNAME www
sub     NS   ns.sub
ns.sub  A    192.0.2.99
c1      CNAME c2
c2      CNAME www
l1      CNAME l2
l2      CNAME l1
*.w     A    192.0.2.7
big     TXT  \"one of many records that together do not fit in 512 bytes, number 1\"
        TXT  \"one of many records that together do not fit in 512 bytes, number 2\"
        TXT  \"one of many records that together do not fit in 512 bytes, number 3\"
        TXT  \"one of many records that together do not fit in 512 bytes, number 4\"
        TXT  \"one of many records that together do not fit in 512 bytes, number 5\"
        TXT  \"one of many records that together do not fit in 512 bytes, number 6\"
        TXT  \"one of many records that together do not fit in 512 bytes, number 7\"
";

    fn responder() -> Responder {
        let zone = parse_zone(
            &Name::from_ascii("example.com.").unwrap(),
            ZONE,
            Path::new("t.zone"),
        )
        .unwrap();
        let mut catalog = Catalog::default();
        catalog.insert(zone);
        Responder::new(catalog, 1232)
    }

    fn query(name: &str, record_type: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0x1234;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        if let Some(payload) = edns {
            let mut opt = Edns::new();
            opt.set_max_payload(payload);
            message.edns = Some(opt);
        }
        message.to_vec().unwrap()
    }

    /// Everything a client sees, order within sections aside.
    fn summary(answer: &[u8]) -> String {
        let message = Message::from_vec(answer).unwrap();
        let section = |records: &[Record]| {
            records
                .iter()
                .map(|r| r.to_string())
                .collect::<BTreeSet<_>>()
        };
        format!(
            "{:?} aa={} rd={} cd={} q={:?} an={:?} ns={:?} ar={:?} edns={:?}",
            message.metadata.response_code,
            message.metadata.authoritative,
            message.metadata.recursion_desired,
            message.metadata.checking_disabled,
            message.queries,
            section(&message.answers),
            section(&message.authorities),
            section(&message.additionals),
            message
                .edns
                .map(|e| (e.max_payload(), e.version(), e.flags().dnssec_ok)),
        )
    }

    #[test]
    fn the_fast_path_answers_exactly_as_the_general_one() {
        let responder = responder();
        let cases = [
            ("WwW.example.COM.", RecordType::A),
            ("www.example.com.", RecordType::AAAA),
            ("www.example.com.", RecordType::MX),
            ("mail.example.com.", RecordType::MX),
            ("txt.example.com.", RecordType::TXT),
            ("nope.example.com.", RecordType::A),
            ("example.com.", RecordType::SOA),
            ("example.com.", RecordType::NS),
        ];
        for (name, record_type) in cases {
            for edns in [None, Some(512), Some(4096)] {
                let request = query(name, record_type, edns);
                assert!(
                    PlainQuery::parse(&request).is_some(),
                    "{name} {record_type} is plain"
                );
                let fast = responder.respond(&request, LOCAL, Transport::Udp).unwrap();
                let general = responder
                    .respond_in_general(&request, LOCAL, Transport::Udp, Asked::ByClient)
                    .unwrap();
                assert_eq!(
                    summary(&fast),
                    summary(&general),
                    "{name} {record_type} {edns:?}"
                );
                let question_end = request.len() - if edns.is_some() { 11 } else { 0 };
                assert_eq!(
                    &fast[12..question_end],
                    &request[12..question_end],
                    "question echoed as sent"
                );
            }
        }
    }

    #[test]
    fn what_the_fast_path_leaves_still_gets_answered() {
        let responder = responder();
        for (name, record_type) in [
            ("alias.example.com.", RecordType::A),
            ("ns.sub.example.com.", RecordType::A),
            ("www.example.org.", RecordType::A),
        ] {
            let answer = responder
                .respond(&query(name, record_type, None), LOCAL, Transport::Udp)
                .unwrap();
            let message = Message::from_vec(&answer).unwrap();
            match name {
                "alias.example.com." => assert_eq!(
                    message.answers.len(),
                    3,
                    "the CNAME and www's two addresses"
                ),
                "ns.sub.example.com." => {
                    assert!(!message.metadata.authoritative && message.authorities.len() == 1)
                }
                _ => assert_eq!(message.metadata.response_code, ResponseCode::Refused),
            }
        }
    }

    fn answer(request: &[u8]) -> Message {
        Message::from_vec(
            &responder()
                .respond(request, LOCAL, Transport::Udp)
                .expect("an answer"),
        )
        .unwrap()
    }

    fn types(records: &[Record]) -> Vec<RecordType> {
        records.iter().map(|record| record.record_type()).collect()
    }

    #[test]
    fn alias_chains_are_followed_and_loops_stop() {
        let chain = answer(&query("c1.example.com.", RecordType::A, None));
        assert_eq!(
            types(&chain.answers),
            [
                RecordType::CNAME,
                RecordType::CNAME,
                RecordType::A,
                RecordType::A
            ]
        );
        let ring = answer(&query("l1.example.com.", RecordType::A, None));
        assert_eq!(types(&ring.answers), [RecordType::CNAME, RecordType::CNAME]);
        assert_eq!(ring.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn wildcards_synthesise_records_owned_by_the_query_name() {
        let synthesised = answer(&query("anything.w.example.com.", RecordType::A, None));
        assert_eq!(synthesised.answers.len(), 1);
        assert_eq!(
            synthesised.answers[0].name.to_ascii(),
            "anything.w.example.com."
        );
    }

    #[test]
    fn any_gets_one_rrset() {
        let any = answer(&query("www.example.com.", RecordType::ANY, None));
        assert_eq!(
            types(&any.answers),
            [RecordType::A, RecordType::A],
            "the lowest type only"
        );
    }

    /// A query with an OPT record of `version`, `flags` and raw `options`.
    fn with_opt(version: u8, flags: u8, options: &[u8]) -> Vec<u8> {
        let mut request = query("www.example.com.", RecordType::A, None);
        request[11] = 1;
        request.extend_from_slice(&[0, 0, 41, 4, 0, 0, version, flags, 0]);
        request.extend_from_slice(&(options.len() as u16).to_be_bytes());
        request.extend_from_slice(options);
        request
    }

    #[test]
    fn edns_versions_flags_and_client_subnet() {
        let badvers = answer(&with_opt(1, 0, &[]));
        // 16 is BADVERS in an OPT context (hickory decodes it as BADSIG,
        // TSIG's name for the same number).
        assert_eq!(u16::from(badvers.metadata.response_code), 16);
        assert_eq!(badvers.edns.map(|edns| edns.version()), Some(0));
        let dnssec_ok = answer(&with_opt(0, 0x80, &[]));
        assert!(
            dnssec_ok.edns.is_some_and(|edns| edns.flags().dnssec_ok),
            "DO copied"
        );
        let subnet = answer(&with_opt(0, 0, &[0, 8, 0, 7, 0, 1, 24, 0, 198, 18, 0]));
        let echoed = subnet
            .edns
            .and_then(|edns| edns.options().get(EdnsCode::Subnet).cloned());
        match echoed {
            Some(EdnsOption::Subnet(echo)) => {
                assert_eq!((echo.source_prefix(), echo.scope_prefix()), (24, 0))
            }
            other => panic!("Client Subnet not echoed: {other:?}"),
        }
        let unknown = answer(&with_opt(0, 0, &[0xfd, 0xe9, 0, 1, 7]));
        assert!(
            unknown
                .edns
                .is_some_and(|edns| edns.options().as_ref().is_empty()),
            "unknown options ignored"
        );
        assert_eq!(unknown.answers.len(), 2);
    }

    #[test]
    fn answers_too_big_for_udp_are_truncated() {
        let classic = answer(&query("big.example.com.", RecordType::TXT, None));
        assert!(classic.metadata.truncation && classic.answers.is_empty());
        let large = answer(&query("big.example.com.", RecordType::TXT, Some(1232)));
        assert!(!large.metadata.truncation && large.answers.len() == 7);
        let tcp = responder()
            .respond(
                &query("big.example.com.", RecordType::TXT, None),
                LOCAL,
                Transport::Tcp,
            )
            .unwrap();
        assert_eq!(
            Message::from_vec(&tcp).unwrap().answers.len(),
            7,
            "TCP carries it whole"
        );
    }

    #[test]
    fn odd_messages_get_errors_or_nothing() {
        let plain = query("www.example.com.", RecordType::A, None);
        let responder = responder();
        let mut status = plain.clone();
        status[2] |= 2 << 3;
        let notimp =
            Message::from_vec(&responder.respond(&status, LOCAL, Transport::Udp).unwrap()).unwrap();
        assert_eq!(notimp.metadata.response_code, ResponseCode::NotImp);
        let mut no_question = plain.clone();
        no_question[5] = 0;
        no_question.truncate(12);
        let formerr = Message::from_vec(
            &responder
                .respond(&no_question, LOCAL, Transport::Udp)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
        let mut response = plain.clone();
        response[2] |= 0x80;
        assert!(
            responder
                .respond(&response, LOCAL, Transport::Udp)
                .is_none(),
            "responses are ignored"
        );
        assert!(
            responder
                .respond(&plain[..plain.len() - 3], LOCAL, Transport::Udp)
                .is_none(),
            "cut short"
        );
        assert!(
            responder
                .respond(b"\xde\xad\xbe", LOCAL, Transport::Udp)
                .is_none(),
            "garbage"
        );
    }

    /// The test zone, signed online with a key made in a scratch
    /// directory.
    fn signing_responder() -> Responder {
        let origin = Name::from_ascii("example.com.").unwrap();
        let mut zone = parse_zone(&origin, ZONE, Path::new("t.zone")).unwrap();
        zone.sign_online();
        let dir = std::env::temp_dir().join(format!(
            "dnslb-respond-keys-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let signer = crate::signer::ZoneSigner::open(
            &origin,
            crate::signer::SigningPolicy::default(),
            &dir,
            None,
            crate::signer::now(),
        )
        .unwrap();
        let mut catalog = Catalog::default();
        let apex = zone.origin().clone();
        catalog.insert(zone);
        let responder = Responder::new(catalog, 1232);
        responder.set_signers(Signers::from([(apex, Arc::new(signer))]));
        responder
    }

    fn with_flags(name: &str, record_type: RecordType, flags: u16) -> Vec<u8> {
        let mut message = Message::from_vec(&query(name, record_type, Some(1232))).unwrap();
        if let Some(edns) = message.edns.as_mut() {
            *edns.flags_mut() = flags.into();
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn answers_without_do_are_the_same_whether_the_zone_is_signed_or_not() {
        let (plain, signed) = (responder(), signing_responder());
        for (name, record_type) in [
            ("www.example.com.", RecordType::A),
            ("www.example.com.", RecordType::TXT),
            ("nope.example.com.", RecordType::A),
            ("x.w.example.com.", RecordType::A),
            ("c1.example.com.", RecordType::A),
            ("a.sub.example.com.", RecordType::A),
            ("mail.example.com.", RecordType::MX),
            ("example.com.", RecordType::DNSKEY),
        ] {
            for edns in [None, Some(1232)] {
                let request = query(name, record_type, edns);
                // The fast path and the general one, each.
                let through = |r: &Responder| {
                    (
                        r.respond(&request, LOCAL, Transport::Udp),
                        r.respond_in_general(&request, LOCAL, Transport::Udp, Asked::ByClient),
                    )
                };
                assert_eq!(through(&plain), through(&signed), "{name} {record_type}");
            }
        }
    }

    /// The fast path's answer to `request`, if it takes it (rotation 0).
    fn fast_answer(responder: &Responder, request: &[u8]) -> Option<Vec<u8>> {
        let query = PlainQuery::parse(request)?;
        let mut answer = Vec::new();
        let (catalog, signers) = (responder.catalog.load(), responder.signers.load());
        query
            .answer_into(
                &mut answer,
                (&catalog, &signers),
                responder.edns_payload,
                None,
                0,
            )
            .map(|()| answer)
    }

    #[test]
    fn do_queries_take_the_fast_path_with_the_signatures_the_general_one_sends() {
        const DO: u16 = 0x8000;
        const CO: u16 = EDNS_FLAG_CO;
        let cases = [
            ("WwW.example.COM.", RecordType::A),
            ("www.example.com.", RecordType::AAAA),
            ("txt.example.com.", RecordType::TXT),
            ("example.com.", RecordType::SOA),
            ("www.example.com.", RecordType::MX),
            ("nope.example.com.", RecordType::A),
            ("x.w.example.com.", RecordType::A),
            ("mail.example.com.", RecordType::MX),
        ];
        // Online: the RRsets of the zone's own names, signed; what DNSSEC
        // has to prove (NODATA, a missing name, a wildcard) and answers
        // with additional records go the general way.
        let signed_fast = 4;
        for (responder, online) in [(responder(), false), (signing_responder(), true)] {
            for (i, (name, record_type)) in cases.into_iter().enumerate() {
                for flags in [DO, DO | CO] {
                    let request = with_flags(name, record_type, flags);
                    let general = responder
                        .respond_in_general(&request, LOCAL, Transport::Udp, Asked::ByClient)
                        .unwrap();
                    // The general path made the signatures; the fast path
                    // only takes them from the cache.
                    let fast = fast_answer(&responder, &request);
                    // Unsigned, all but the answer with additional records.
                    let expected = match online {
                        true => i < signed_fast,
                        false => name != "mail.example.com.",
                    };
                    assert_eq!(
                        fast.is_some(),
                        expected,
                        "{name} {record_type} online {online}"
                    );
                    let Some(fast) = fast else { continue };
                    // The SOA's names in its data (in answers and
                    // denials) are compressed by the general encoder only,
                    // as without DO.
                    let len = |answer: &[u8]| {
                        let with_soa = Message::from_vec(answer)
                            .unwrap()
                            .all_sections()
                            .any(|r| r.record_type() == RecordType::SOA);
                        (!with_soa).then_some(answer.len())
                    };
                    assert_eq!(
                        (summary(&fast), len(&fast)),
                        (summary(&general), len(&general)),
                        "{name} {record_type} {flags:#x} online {online}"
                    );
                    let rrsigs = Message::from_vec(&fast)
                        .unwrap()
                        .answers
                        .iter()
                        .filter(|r| r.record_type() == RecordType::RRSIG)
                        .count();
                    assert_eq!(rrsigs, usize::from(online), "{name} {record_type}");
                }
            }
        }
        // Nothing signed yet: the fast path leaves it to the general one,
        // which signs.
        let cold = signing_responder();
        let request = with_flags("www.example.com.", RecordType::A, DO);
        assert!(fast_answer(&cold, &request).is_none());
        assert!(cold.respond(&request, LOCAL, Transport::Udp).is_some());
        assert!(fast_answer(&cold, &request).is_some());
    }

    #[test]
    fn do_answers_of_a_zone_signed_online_carry_signatures_and_compact_denials() {
        let responder = signing_responder();
        let answer = |request: &Vec<u8>| {
            Message::from_vec(&responder.respond(request, LOCAL, Transport::Udp).unwrap()).unwrap()
        };
        let types = |records: &[Record]| -> Vec<RecordType> {
            records.iter().map(Record::record_type).collect()
        };
        let nsec_types = |records: &[Record]| -> Vec<RecordType> {
            records
                .iter()
                .find_map(|r| match &r.data {
                    RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::NSEC(nsec)) => {
                        Some(nsec.type_bit_maps().collect())
                    }
                    _ => None,
                })
                .unwrap_or_default()
        };
        const DO: u16 = 0x8000;

        let www = answer(&with_flags("www.example.com.", RecordType::A, DO));
        assert_eq!(
            types(&www.answers),
            [RecordType::A, RecordType::A, RecordType::RRSIG]
        );

        // A missing name: NOERROR, one NSEC at the name with NXNAME.
        let missing = answer(&with_flags("nope.example.com.", RecordType::A, DO));
        assert_eq!(missing.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            types(&missing.authorities),
            [
                RecordType::SOA,
                RecordType::RRSIG,
                RecordType::NSEC,
                RecordType::RRSIG
            ]
        );
        assert_eq!(
            nsec_types(&missing.authorities),
            [RecordType::RRSIG, RecordType::NSEC, NXNAME]
        );
        // With CO: NXDOMAIN, and CO in the answer.
        let with_co = answer(&with_flags(
            "nope.example.com.",
            RecordType::A,
            DO | EDNS_FLAG_CO,
        ));
        assert_eq!(with_co.metadata.response_code, ResponseCode::NXDomain);
        assert_ne!(with_co.edns.unwrap().flags().z & EDNS_FLAG_CO, 0);

        // A name without the type: the types it has.
        let nodata = answer(&with_flags("www.example.com.", RecordType::TXT, DO));
        assert_eq!(
            nsec_types(&nodata.authorities),
            [
                RecordType::A,
                RecordType::AAAA,
                RecordType::RRSIG,
                RecordType::NSEC
            ]
        );
        // The apex lists its DNSKEY.
        let apex = answer(&with_flags("example.com.", RecordType::TXT, DO));
        assert!(nsec_types(&apex.authorities).contains(&RecordType::DNSKEY));
        // A delegation without DS: its NS.
        let referral = answer(&with_flags("a.sub.example.com.", RecordType::A, DO));
        assert_eq!(
            nsec_types(&referral.authorities),
            [RecordType::NS, RecordType::RRSIG, RecordType::NSEC]
        );
        // Glue has no signatures; the MX target's address has.
        assert!(
            types(&referral.additionals)
                .iter()
                .all(|t| *t != RecordType::RRSIG)
        );
        let mail = answer(&with_flags("mail.example.com.", RecordType::MX, DO));
        assert!(types(&mail.additionals).contains(&RecordType::RRSIG));
        // A wildcard's answer is signed as the name's own: its labels.
        let wild = answer(&with_flags("x.w.example.com.", RecordType::A, DO));
        let labels = wild.answers.iter().find_map(|r| match &r.data {
            RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(rrsig)) => {
                Some(rrsig.input().num_labels)
            }
            _ => None,
        });
        assert_eq!(labels, Some(4));
        assert!(wild.authorities.is_empty());
        // The DNSKEY RRset, signed.
        let keys = answer(&with_flags("example.com.", RecordType::DNSKEY, DO));
        assert_eq!(
            types(&keys.answers),
            [RecordType::DNSKEY, RecordType::RRSIG]
        );
        // NXNAME asked: FORMERR.
        let nxname = answer(&with_flags("www.example.com.", NXNAME, DO));
        assert_eq!(nxname.metadata.response_code, ResponseCode::FormErr);
    }
}
