//! Key files as BIND writes them: `K<zone>+<alg>+<tag>.key` holds the
//! DNSKEY record, `K<zone>+<alg>+<tag>.private` the private key and the
//! key's timing (RFC-less, but the format every DNSSEC tool reads:
//! `dnssec-dsfromkey` computes the DS from the first, `dnssec-signzone`
//! signs with the pair, and keys made by `dnssec-keygen` are imported by
//! putting them in the key directory).

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hickory_proto::{
    dnssec::{
        Algorithm, PublicKey, PublicKeyBuf, SigningKey, Verifier,
        crypto::{EcdsaSigningKey, Ed25519SigningKey},
        rdata::{DNSKEY, DNSSECRData},
    },
    rr::{Name, RData},
};
use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use time::{OffsetDateTime, PrimitiveDateTime, format_description::BorrowedFormatItem, macros};

use crate::file_error::FileError;

/// The algorithms dnslb signs with (RFC 8624 §3.1: the two a signer
/// should use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyAlgorithm {
    /// 13, the default.
    #[serde(rename = "ecdsap256sha256")]
    EcdsaP256Sha256,
    /// 15.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyAlgorithm {
    pub fn number(self) -> u8 {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => 13,
            KeyAlgorithm::Ed25519 => 15,
        }
    }

    pub fn mnemonic(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            KeyAlgorithm::Ed25519 => "ED25519",
        }
    }

    pub fn dnssec(self) -> Algorithm {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => Algorithm::ECDSAP256SHA256,
            KeyAlgorithm::Ed25519 => Algorithm::ED25519,
        }
    }

    fn from_number(number: u8) -> Option<KeyAlgorithm> {
        [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519]
            .into_iter()
            .find(|algorithm| algorithm.number() == number)
    }
}

/// When a key enters and leaves each state, in seconds since 1970: BIND's
/// timing fields. An event not set has not been planned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub created: u64,
    /// In the DNSKEY RRset from then on.
    pub publish: Option<u64>,
    /// Signs from then on.
    pub activate: Option<u64>,
    /// Signs no more from then on.
    pub inactive: Option<u64>,
    /// Leaves the DNSKEY RRset then.
    pub delete: Option<u64>,
    /// Its CDS and CDNSKEY are published from then on (RFC 7344).
    pub sync_publish: Option<u64>,
    /// ... and withdrawn then.
    pub sync_delete: Option<u64>,
}

/// Where in [`Timing`] a field goes.
type TimingField = fn(&mut Timing) -> &mut Option<u64>;

/// The names of the timing fields in a `.private` file, with where each
/// goes.
const TIMING_FIELDS: [(&str, TimingField); 6] = [
    ("Publish", |t| &mut t.publish),
    ("Activate", |t| &mut t.activate),
    ("Inactive", |t| &mut t.inactive),
    ("Delete", |t| &mut t.delete),
    ("SyncPublish", |t| &mut t.sync_publish),
    ("SyncDelete", |t| &mut t.sync_delete),
];

/// BIND's timestamps: `YYYYMMDDHHMMSS`, UTC.
const TIMESTAMP: &[BorrowedFormatItem<'_>] =
    macros::format_description!("[year][month][day][hour][minute][second]");

fn timestamp(seconds: u64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds as i64)
        .ok()
        .and_then(|time| time.format(TIMESTAMP).ok())
        .unwrap_or_default()
}

fn parse_timestamp(text: &str) -> Option<u64> {
    let time = PrimitiveDateTime::parse(text, TIMESTAMP).ok()?;
    u64::try_from(time.assume_utc().unix_timestamp()).ok()
}

/// One key of a zone: its DNSKEY, its private half and its timing.
#[derive(Clone)]
pub struct ZoneKey {
    pub zone: Name,
    pub dnskey: DNSKEY,
    pub tag: u16,
    pub algorithm: KeyAlgorithm,
    secret: [u8; 32],
    pub timing: Timing,
}

impl std::fmt::Debug for ZoneKey {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKey")
            .field("zone", &self.zone)
            .field("tag", &self.tag)
            .field("algorithm", &self.algorithm)
            .field("key_signing", &self.key_signing())
            .field("timing", &self.timing)
            .finish()
    }
}

/// The DNSKEY flags: a zone key (256), and the SEP bit (1) for a key whose
/// DS the parent holds.
const ZONE_KEY: u16 = 256;
const SECURE_ENTRY_POINT: u16 = 1;

impl ZoneKey {
    /// A new key with a private key from the system's random source.
    pub fn generate(
        zone: &Name,
        algorithm: KeyAlgorithm,
        key_signing: bool,
        now: u64,
    ) -> Result<ZoneKey, KeyProblem> {
        let random = SystemRandom::new();
        loop {
            let mut secret = [0u8; 32];
            random.fill(&mut secret).map_err(|_| KeyProblem::Random)?;
            let flags = ZONE_KEY | if key_signing { SECURE_ENTRY_POINT } else { 0 };
            // A P-256 scalar must be below the group's order: a random one
            // rarely is not, and is then drawn again.
            if let Some(public) = public_key(algorithm, &secret) {
                return Ok(ZoneKey::assemble(
                    zone,
                    algorithm,
                    flags,
                    public,
                    secret,
                    Timing {
                        created: now,
                        ..Timing::default()
                    },
                ));
            }
        }
    }

    fn assemble(
        zone: &Name,
        algorithm: KeyAlgorithm,
        flags: u16,
        public: Vec<u8>,
        secret: [u8; 32],
        timing: Timing,
    ) -> ZoneKey {
        let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(public, algorithm.dnssec()));
        let tag = dnskey.calculate_key_tag().unwrap_or_default();
        ZoneKey {
            zone: zone.clone(),
            dnskey,
            tag,
            algorithm,
            secret,
            timing,
        }
    }

    /// A key-signing key: it has the SEP flag and signs the DNSKEY RRset.
    pub fn key_signing(&self) -> bool {
        self.dnskey.secure_entry_point()
    }

    /// `K<zone>+<alg>+<tag>`, as BIND names the pair of files.
    pub fn file_stem(&self) -> String {
        format!(
            "K{}+{:03}+{:05}",
            self.zone.to_lowercase().to_ascii(),
            self.algorithm.number(),
            self.tag
        )
    }

    /// The signer: ring's, through hickory's signing interface.
    pub fn signing_key(&self) -> Result<Box<dyn SigningKey>, KeyProblem> {
        let public = self.dnskey.public_key().public_bytes();
        match self.algorithm {
            KeyAlgorithm::Ed25519 => Ed25519KeyPair::from_seed_and_public_key(&self.secret, public)
                .map(|pair| Box::new(Ed25519SigningKey::from_ed25519(pair)) as Box<dyn SigningKey>)
                .map_err(|_| KeyProblem::Mismatch),
            KeyAlgorithm::EcdsaP256Sha256 => {
                // ring takes the public point uncompressed (0x04, x, y);
                // DNSSEC writes it without the 0x04 (RFC 6605 §4).
                let point = [&[0x04], public].concat();
                EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.secret,
                    &point,
                    &SystemRandom::new(),
                )
                .map(|pair| {
                    Box::new(EcdsaSigningKey::from_ecdsa(
                        pair,
                        Algorithm::ECDSAP256SHA256,
                    )) as Box<dyn SigningKey>
                })
                .map_err(|_| KeyProblem::Mismatch)
            }
        }
    }

    /// The `.key` file's text: comments with the timing, then the DNSKEY.
    fn key_text(&self) -> String {
        let kind = match self.key_signing() {
            true => "key-signing",
            false => "zone-signing",
        };
        let zone = self.zone.to_lowercase().to_ascii();
        let mut text = format!("; This is a {kind} key, keyid {}, for {zone}\n", self.tag);
        for (field, value) in self.timing_fields() {
            text.push_str(&format!("; {field}: {}\n", timestamp(value)));
        }
        text.push_str(&format!(
            "{zone} IN DNSKEY {} 3 {} {}\n",
            self.dnskey.flags(),
            self.algorithm.number(),
            BASE64.encode(self.dnskey.public_key().public_bytes())
        ));
        text
    }

    /// The `.private` file's text (format v1.3).
    fn private_text(&self) -> String {
        let mut text = format!(
            "Private-key-format: v1.3\nAlgorithm: {} ({})\nPrivateKey: {}\n",
            self.algorithm.number(),
            self.algorithm.mnemonic(),
            BASE64.encode(self.secret)
        );
        for (field, value) in self.timing_fields() {
            text.push_str(&format!("{field}: {}\n", timestamp(value)));
        }
        text
    }

    fn timing_fields(&self) -> Vec<(&'static str, u64)> {
        let mut timing = self.timing;
        let mut fields = vec![("Created", timing.created)];
        for (field, place) in TIMING_FIELDS {
            if let Some(value) = *place(&mut timing) {
                fields.push((field, value));
            }
        }
        fields
    }

    /// Writes the pair into `dir`: the `.private` file mode 0600 (and the
    /// `.key` file 0644), each whole or not at all, owned by `owner` when
    /// given (the user the daemon runs as).
    pub fn write(
        &self,
        dir: &Path,
        owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    ) -> Result<(), FileError> {
        let stem = self.file_stem();
        for (extension, text, mode) in [
            ("key", self.key_text(), 0o644),
            ("private", self.private_text(), 0o600),
        ] {
            let path = dir.join(format!("{stem}.{extension}"));
            write_whole(&path, text.as_bytes(), mode, owner)
                .map_err(|error| FileError::new(&path, KeyProblem::Write(error)))?;
        }
        Ok(())
    }

    /// Reads the pair whose `.private` file is `private`, for `zone`.
    pub fn read(private: &Path, zone: &Name) -> Result<ZoneKey, FileError> {
        let public = private.with_extension("key");
        let at = |path: &Path| {
            let path = path.to_owned();
            move |problem: KeyProblem| FileError::new(path, problem)
        };
        let mode = fs::metadata(private)
            .map_err(|error| at(private)(KeyProblem::Read(error)))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(at(private)(KeyProblem::Exposed { mode: mode & 0o777 }));
        }
        let private_text =
            fs::read_to_string(private).map_err(|error| at(private)(KeyProblem::Read(error)))?;
        let public_text =
            fs::read_to_string(&public).map_err(|error| at(&public)(KeyProblem::Read(error)))?;
        let dnskey = read_dnskey(&public_text, zone)
            .map_err(|(line, problem)| FileError::new(&public, problem).at_line(Some(line)))?;
        let (algorithm, secret, timing) = read_private(&private_text)
            .map_err(|(line, problem)| FileError::new(private, problem).at_line(Some(line)))?;
        let algorithm_of_dnskey = u8::from(dnskey.algorithm());
        if algorithm.number() != algorithm_of_dnskey {
            return Err(at(private)(KeyProblem::OtherAlgorithm {
                key_file: public,
                number: algorithm_of_dnskey,
            }));
        }
        if public_key(algorithm, &secret).as_deref() != Some(dnskey.public_key().public_bytes()) {
            return Err(at(private)(KeyProblem::NotThePublicKey {
                key_file: public,
            }));
        }
        let flags = dnskey.flags();
        let public_bytes = dnskey.public_key().public_bytes().to_vec();
        Ok(ZoneKey::assemble(
            zone,
            algorithm,
            flags,
            public_bytes,
            secret,
            timing,
        ))
    }
}

/// The public key of `secret`, as DNSKEY holds it; `None` when `secret` is
/// not a private key of `algorithm`.
fn public_key(algorithm: KeyAlgorithm, secret: &[u8; 32]) -> Option<Vec<u8>> {
    match algorithm {
        KeyAlgorithm::Ed25519 => Some(
            Ed25519KeyPair::from_seed_unchecked(secret)
                .ok()?
                .public_key()
                .as_ref()
                .to_vec(),
        ),
        KeyAlgorithm::EcdsaP256Sha256 => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let key = p256::SecretKey::from_slice(secret).ok()?;
            let point = key.public_key().to_encoded_point(false);
            point.as_bytes().get(1..).map(<[u8]>::to_vec)
        }
    }
}

/// The DNSKEY of a `.key` file: its one record, for `zone`.
fn read_dnskey(text: &str, zone: &Name) -> Result<DNSKEY, (usize, KeyProblem)> {
    let (number, line) = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .find(|(_, line)| !line.is_empty() && !line.starts_with(';'))
        .ok_or((1, KeyProblem::NoRecord))?;
    let record = crate::zone::read_record(line, zone)
        .map_err(|problem| (number, KeyProblem::Record(problem)))?;
    if record.owner.to_lowercase() != zone.to_lowercase() {
        return Err((
            number,
            KeyProblem::OtherZone {
                owner: record.owner,
            },
        ));
    }
    match record.rdata {
        RData::DNSSEC(DNSSECRData::DNSKEY(dnskey)) => Ok(dnskey),
        _ => Err((number, KeyProblem::NoRecord)),
    }
}

/// The algorithm, private key and timing of a `.private` file.
fn read_private(text: &str) -> Result<(KeyAlgorithm, [u8; 32], Timing), (usize, KeyProblem)> {
    let mut algorithm = None;
    let mut secret = None;
    let mut timing = Timing::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (field, value) = line
            .split_once(':')
            .map(|(field, value)| (field.trim(), value.trim()))
            .ok_or((number, KeyProblem::NotAField))?;
        let bad = |what| (number, KeyProblem::BadValue { field: what });
        match field {
            "Private-key-format" if !value.starts_with("v1.") => {
                return Err((number, KeyProblem::Format(value.to_owned())));
            }
            "Algorithm" => {
                let code = value.split_whitespace().next().unwrap_or_default();
                let code: u8 = code.parse().map_err(|_| bad("Algorithm"))?;
                algorithm = Some(
                    KeyAlgorithm::from_number(code).ok_or((number, KeyProblem::Algorithm(code)))?,
                );
            }
            "PrivateKey" => {
                let bytes = BASE64.decode(value).map_err(|_| bad("PrivateKey"))?;
                secret = Some(<[u8; 32]>::try_from(bytes).map_err(|_| bad("PrivateKey"))?);
            }
            "Created" => timing.created = parse_timestamp(value).ok_or(bad("Created"))?,
            _ => {
                if let Some((name, place)) = TIMING_FIELDS.iter().find(|(name, _)| *name == field) {
                    *place(&mut timing) = Some(parse_timestamp(value).ok_or(bad(name))?);
                }
                // Other fields (BIND's Lifetime, Successor...) are BIND's.
            }
        }
    }
    let last = text.lines().count().max(1);
    let algorithm = algorithm.ok_or((last, KeyProblem::Missing("Algorithm")))?;
    let secret = secret.ok_or((last, KeyProblem::Missing("PrivateKey")))?;
    if public_key(algorithm, &secret).is_none() {
        return Err((
            last,
            KeyProblem::BadValue {
                field: "PrivateKey",
            },
        ));
    }
    Ok((algorithm, secret, timing))
}

/// Writes `bytes` into `path` through a new file renamed over it, so that
/// a reader never sees half a key.
fn write_whole(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&partial)?;
    fs::set_permissions(&partial, fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(&partial, Some(uid), Some(gid))?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&partial, path)
}

/// The keys of `zone` in `dir`: every `K<zone>+*.private` file with its
/// `.key` beside it.
pub fn read_keys(dir: &Path, zone: &Name) -> Result<Vec<ZoneKey>, FileError> {
    let prefix = format!("k{}+", zone.to_lowercase().to_ascii());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(FileError::new(dir, KeyProblem::Read(error))),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "private")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.to_ascii_lowercase().starts_with(&prefix))
        })
        .collect();
    paths.sort();
    paths.iter().map(|path| ZoneKey::read(path, zone)).collect()
}

/// What is wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("cannot write it: {0}")]
    Write(std::io::Error),
    #[error(
        "others can read or write it (mode {mode:o}): a private key must be mode 600 (chmod 600)"
    )]
    Exposed { mode: u32 },
    #[error("no DNSKEY record in it")]
    NoRecord,
    #[error("{0}")]
    Record(String),
    #[error("the DNSKEY is owned by {owner}, not by the zone")]
    OtherZone { owner: Name },
    #[error("not a `Field: value` line")]
    NotAField,
    #[error("the key format {0} is not BIND's v1")]
    Format(String),
    #[error("`{field}` does not hold a valid value")]
    BadValue { field: &'static str },
    #[error("no `{0}` field")]
    Missing(&'static str),
    #[error("algorithm {0} is not one dnslb signs with (13 ECDSAP256SHA256, 15 ED25519)")]
    Algorithm(u8),
    #[error("its algorithm is not that of the DNSKEY in {} ({number})", .key_file.display())]
    OtherAlgorithm { key_file: PathBuf, number: u8 },
    #[error("its private key is not that of the DNSKEY in {}", .key_file.display())]
    NotThePublicKey { key_file: PathBuf },
    #[error("the private key does not match its public key")]
    Mismatch,
    #[error("the system's random source failed")]
    Random,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    #[test]
    fn written_keys_read_back_the_same_and_sign() {
        let dir = tempdir();
        for algorithm in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
            let mut key = ZoneKey::generate(&zone(), algorithm, true, 1_800_000_000).unwrap();
            key.timing.publish = Some(1_800_000_000);
            key.timing.activate = Some(1_800_003_600);
            key.write(&dir, None).unwrap();
            let private = dir.join(format!("{}.private", key.file_stem()));
            let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let read = ZoneKey::read(&private, &zone()).unwrap();
            assert_eq!(read.dnskey, key.dnskey);
            assert_eq!(read.tag, key.tag);
            assert_eq!(read.timing, key.timing);
            assert!(read.key_signing());
            let signer = read.signing_key().unwrap();
            let public = signer.to_public_key().unwrap();
            assert_eq!(
                public.public_bytes(),
                key.dnskey.public_key().public_bytes()
            );
        }
        assert_eq!(read_keys(&dir, &zone()).unwrap().len(), 2);
        assert!(
            read_keys(&dir, &Name::from_ascii("other.").unwrap())
                .unwrap()
                .is_empty()
        );
    }

    /// A key as `dnssec-keygen -a ECDSAP256SHA256 -f KSK example.com`
    /// wrote it.
    const BIND_KEY: &str = "; This is a key-signing key, keyid 64423, for example.com.\n\
        ; Created: 20261207025922 (Mon Dec  7 02:59:22 2026)\n\
        example.com. IN DNSKEY 257 3 13 CVXeYVStupkiZUOrl3zN5Dqtg4rb/dWoBP+fUo4a5SShm8u365DSQQr0 YQ5sfAIwMjYl8leC6uA6k9aRunFBww==\n";
    const BIND_PRIVATE: &str = "Private-key-format: v1.3\n\
        Algorithm: 13 (ECDSAP256SHA256)\n\
        PrivateKey: VFBmX6OP2RL6ySKB1G5PuNf1Mz2qdKd8Xb8drGRJeqM=\n\
        Created: 20261207025922\n\
        Publish: 20261207025922\n\
        Activate: 20261207025922\n";

    fn put(dir: &Path, stem: &str, key: &str, private: &str, mode: u32) -> PathBuf {
        fs::write(dir.join(format!("{stem}.key")), key).unwrap();
        let path = dir.join(format!("{stem}.private"));
        fs::write(&path, private).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn keys_made_by_bind_are_read() {
        let dir = tempdir();
        let path = put(
            &dir,
            "Kexample.com.+013+64423",
            BIND_KEY,
            BIND_PRIVATE,
            0o600,
        );
        let key = ZoneKey::read(&path, &zone()).unwrap();
        assert_eq!(key.tag, 64423);
        assert!(key.key_signing());
        assert_eq!(key.timing.activate, parse_timestamp("20261207025922"));
        assert_eq!(key.file_stem(), "Kexample.com.+013+64423");
    }

    #[test]
    fn bad_key_files_are_refused_naming_the_file_and_the_problem() {
        let dir = tempdir();
        let stem = "Kexample.com.+013+64423";
        let problem = |key: &str, private: &str, mode: u32| {
            let path = put(&dir, stem, key, private, mode);
            ZoneKey::read(&path, &zone()).unwrap_err().to_string()
        };
        let exposed = problem(BIND_KEY, BIND_PRIVATE, 0o644);
        assert!(exposed.contains(".private: others can read"), "{exposed}");
        assert!(exposed.contains("mode 644"), "{exposed}");
        let unknown = problem(
            BIND_KEY,
            &BIND_PRIVATE.replace("13 (ECDSAP256SHA256)", "8 (RSASHA256)"),
            0o600,
        );
        assert!(
            unknown.contains(".private:2: algorithm 8 is not one"),
            "{unknown}"
        );
        let malformed = problem(BIND_KEY, &BIND_PRIVATE.replace("VFBmX6OP", "!!!"), 0o600);
        assert!(
            malformed.contains(".private:3: `PrivateKey` does not hold"),
            "{malformed}"
        );
        let other = ZoneKey::generate(&zone(), KeyAlgorithm::EcdsaP256Sha256, true, 0).unwrap();
        let swapped = problem(&other.key_text(), BIND_PRIVATE, 0o600);
        assert!(
            swapped.contains("is not that of the DNSKEY in"),
            "{swapped}"
        );
        let no_record = problem("; nothing\n", BIND_PRIVATE, 0o600);
        assert!(
            no_record.contains(".key:1: no DNSKEY record"),
            "{no_record}"
        );
        let elsewhere = problem(
            &BIND_KEY.replace("example.com. IN", "example.net. IN"),
            BIND_PRIVATE,
            0o600,
        );
        assert!(elsewhere.contains("owned by example.net."), "{elsewhere}");
        fs::remove_file(dir.join(format!("{stem}.key"))).unwrap();
        let missing = ZoneKey::read(&dir.join(format!("{stem}.private")), &zone())
            .unwrap_err()
            .to_string();
        assert!(missing.contains(".key: cannot read it"), "{missing}");
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dnslb-keyfile-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
