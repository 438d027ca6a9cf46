//! What an operator changes at run time, kept in the state directory so
//! that a restart, a crash or an upgrade changes none of it: the drains
//! and weights (`overrides.json`), the control API's zone changes
//! (`zones.json`), the anycast withdrawal (`anycast.json`) and the serials
//! of the signed copies secondaries have (`signed-serials.json`). Each file is
//! replaced whole (temporary file, fsync, rename) before the change it
//! records takes effect, and read back at start.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::steering::Overrides;

#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    #[error(
        "{}: {source} (state kept across restarts: fix or remove the file)",
        .file.display()
    )]
    Unreadable {
        file: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: `{origin}` is not a zone name: {reason}", .file.display())]
    BadOrigin {
        file: PathBuf,
        origin: String,
        reason: String,
    },
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// The control API's zone changes: a file per origin, or `None` for a
/// zone it removed.
pub type ZoneChanges = BTreeMap<Name, Option<PathBuf>>;

#[derive(Default, Serialize, Deserialize)]
struct AnycastKept {
    withdrawn: bool,
}

/// The state directory's record of the operator's changes.
#[derive(Clone, Debug)]
pub struct Kept {
    dir: PathBuf,
}

impl Kept {
    pub fn new(dir: PathBuf) -> Kept {
        Kept { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The drains and weights in force when the daemon last ran (none if
    /// it never changed any).
    pub fn overrides(&self) -> Result<Overrides, KeptError> {
        Ok(read(&self.file(OVERRIDES))?.unwrap_or_default())
    }

    pub fn keep_overrides(&self, overrides: &Overrides) -> Result<(), KeptError> {
        write(&self.file(OVERRIDES), overrides)
    }

    pub fn zone_changes(&self) -> Result<ZoneChanges, KeptError> {
        by_origin(&self.file(ZONES))
    }

    pub fn keep_zone_changes(&self, changes: &ZoneChanges) -> Result<(), KeptError> {
        write_by_origin(&self.file(ZONES), changes)
    }

    /// The serial of the last signed copy of each zone dnslb signs for
    /// secondaries: the next copy's is higher, across restarts.
    pub fn copy_serials(&self) -> Result<BTreeMap<Name, u32>, KeptError> {
        by_origin(&self.file(COPY_SERIALS))
    }

    pub fn keep_copy_serials(&self, serials: &BTreeMap<Name, u32>) -> Result<(), KeptError> {
        write_by_origin(&self.file(COPY_SERIALS), serials)
    }

    /// Whether the operator withdrew this node's anycast addresses.
    pub fn anycast_withdrawn(&self) -> Result<bool, KeptError> {
        Ok(read::<AnycastKept>(&self.file(ANYCAST))?.is_some_and(|kept| kept.withdrawn))
    }

    pub fn keep_anycast_withdrawn(&self, withdrawn: bool) -> Result<(), KeptError> {
        write(&self.file(ANYCAST), &AnycastKept { withdrawn })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

const OVERRIDES: &str = "overrides.json";
const ZONES: &str = "zones.json";
const ANYCAST: &str = "anycast.json";
const COPY_SERIALS: &str = "signed-serials.json";

/// A file of values by zone origin.
fn by_origin<T: DeserializeOwned>(file: &Path) -> Result<BTreeMap<Name, T>, KeptError> {
    let kept: BTreeMap<String, T> = read(file)?.unwrap_or_default();
    kept.into_iter()
        .map(|(origin, value)| {
            let name = Name::from_ascii(&origin).map_err(|error| KeptError::BadOrigin {
                file: file.to_owned(),
                origin: origin.clone(),
                reason: error.to_string(),
            })?;
            Ok((name, value))
        })
        .collect()
}

fn write_by_origin<T: Serialize>(file: &Path, values: &BTreeMap<Name, T>) -> Result<(), KeptError> {
    let text: BTreeMap<String, &T> = values
        .iter()
        .map(|(origin, value)| (origin.to_ascii(), value))
        .collect();
    write(file, &text)
}

fn read<T: DeserializeOwned>(file: &Path) -> Result<Option<T>, KeptError> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeptError::Io {
                file: file.to_owned(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| KeptError::Unreadable {
            file: file.to_owned(),
            source,
        })
}

fn write<T: Serialize + ?Sized>(file: &Path, value: &T) -> Result<(), KeptError> {
    let io = |source| KeptError::Io {
        file: file.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|error| io(error.into()))?;
    crate::durable::replace_file(file, &bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::types::EndpointRef, config::parse_config};

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dnslb-kept-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn what_was_kept_reads_back_and_nothing_kept_reads_as_nothing() {
        let dir = scratch("round");
        let kept = Kept::new(dir.clone());
        assert_eq!(kept.overrides().unwrap(), Overrides::default());
        assert!(kept.zone_changes().unwrap().is_empty());
        assert!(!kept.anycast_withdrawn().unwrap());
        assert!(kept.copy_serials().unwrap().is_empty());

        let config = parse_config(
            Path::new("dnslb.toml"),
            "[pool.web]\nendpoints = [\"198.18.2.1\"]\n",
            None,
        )
        .unwrap();
        let mut overrides = Overrides::default();
        let endpoint = EndpointRef {
            address: "198.18.2.1".parse().unwrap(),
            pool: Some("web".into()),
        };
        overrides.drain(endpoint.clone(), &config.pools).unwrap();
        overrides.set_weight(endpoint, 7, &config.pools).unwrap();
        kept.keep_overrides(&overrides).unwrap();
        assert_eq!(kept.overrides().unwrap(), overrides);

        let changes: ZoneChanges = [
            (
                Name::from_ascii("example.net.").unwrap(),
                Some(PathBuf::from("/etc/dnslb/example.net.zone")),
            ),
            (Name::from_ascii("old.example.").unwrap(), None),
        ]
        .into();
        kept.keep_zone_changes(&changes).unwrap();
        assert_eq!(kept.zone_changes().unwrap(), changes);

        kept.keep_anycast_withdrawn(true).unwrap();
        assert!(kept.anycast_withdrawn().unwrap());

        let serials = BTreeMap::from([(Name::from_ascii("signed.example.").unwrap(), 7u32)]);
        kept.keep_copy_serials(&serials).unwrap();
        assert_eq!(kept.copy_serials().unwrap(), serials);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_named_with_where_it_is_wrong() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("overrides.json"),
            "{\"drained\": [\n  {\"address\": 7}\n]}",
        )
        .unwrap();
        let error = Kept::new(dir.clone()).overrides().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}: ", dir.join("overrides.json").display()))
                && error.contains("line 2")
                && error.contains("fix or remove the file"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
