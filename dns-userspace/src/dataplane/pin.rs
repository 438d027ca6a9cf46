//! `--pin DIR`: hitless restarts and upgrades. The maps that hold answers
//! and counts are pinned under `DIR/layout-N/` (N: `dns_common::MAP_LAYOUT`)
//! and the XDP link at `DIR/link`, so a stopped daemon leaves the kernel
//! answering what it last wrote.
//!
//! A new daemon of the same layout loads its program with those maps,
//! learns what they hold, writes its own configuration over it (every
//! value swapped whole, as always), removes what it did not write, and
//! swaps its program onto the pinned link in one `bpf_link_update`. A
//! daemon of another layout finds no maps of its own: it fills new ones,
//! swaps the program the same way, and then removes the old layout's pins.
//! Queries see the old program with its maps or the new one with its maps,
//! never a mix and never nothing.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use dns_common::names;

use super::{
    AttachMode, Dataplane, DataplaneError, HotType,
    program::{fingerprint, is_small, map_class, xdp_program},
};

/// The maps a restarted daemon adopts: everything that holds answers or
/// counts. Per-CPU scratch space and the log ring buffer belong to one
/// program and are not shared.
const ADOPTED_MAPS: [&str; 15] = [
    names::HOT_A[0],
    names::HOT_A[1],
    names::HOT_AAAA[0],
    names::HOT_AAAA[1],
    names::CLIENT_NETS_A,
    names::CLIENT_NETS_AAAA,
    names::COOKIE_SECRETS,
    names::COUNTERS,
    names::BRANCH_ANSWERS,
    names::GUARD,
    names::LOCAL_ADDRS,
    names::RRL_BUCKETS,
    names::RRL_EXEMPT,
    names::SIGS[0],
    names::SIGS[1],
];

const LINK: &str = "link";

/// Where this daemon's maps are pinned, and whether a previous daemon of
/// the same layout left them there.
pub struct PinPlan {
    dir: PathBuf,
    layout_dir: PathBuf,
    adopting: bool,
    paths: Vec<(&'static str, PathBuf)>,
}

impl PinPlan {
    pub fn new(dir: Option<&Path>, layout: u32) -> Result<Option<PinPlan>, DataplaneError> {
        let Some(dir) = dir else {
            return Ok(None);
        };
        check_bpffs(dir)?;
        let layout_dir = dir.join(format!("layout-{layout}"));
        let adopting = layout_dir.join(names::COUNTERS).exists();
        std::fs::create_dir_all(&layout_dir).map_err(|source| DataplaneError::Pin {
            path: layout_dir.clone(),
            source,
        })?;
        let paths = ADOPTED_MAPS
            .iter()
            .map(|name| (*name, layout_dir.join(name)))
            .collect();
        Ok(Some(PinPlan {
            dir: dir.to_owned(),
            layout_dir,
            adopting,
            paths,
        }))
    }

    /// Each adopted map's name and pin path, for the loader.
    pub fn map_paths(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        self.paths
            .iter()
            .map(|(name, path)| (*name, path.as_path()))
    }
}

/// What a pinned dataplane remembers.
pub struct Pinned {
    dir: PathBuf,
    layout_dir: PathBuf,
    /// Entries a previous daemon wrote that this one has not written
    /// again, by (record type, digest), with their name class (small:
    /// up to 64 bytes).
    pub(super) stale: HashMap<(HotType, u64), bool>,
    /// Client networks a previous daemon wrote, by record type and key.
    stale_networks: Vec<(HotType, aya::maps::lpm_trie::Key<dns_common::ClientNetKey>)>,
    /// The highest service generation a previous daemon used: this one
    /// continues above it, so that generations never mix.
    pub(super) generation_floor: u32,
    /// How many entries a previous daemon of this layout left; `None` when
    /// the maps are new.
    adopted: Option<usize>,
}

impl Dataplane {
    /// Takes over what a previous daemon left in the pinned maps (if it
    /// did): the names each digest holds, the map fill, the generations.
    pub(super) fn adopt(&mut self, plan: PinPlan) -> Result<(), DataplaneError> {
        let mut pinned = Pinned {
            dir: plan.dir,
            layout_dir: plan.layout_dir,
            stale: HashMap::new(),
            stale_networks: Vec::new(),
            generation_floor: 0,
            adopted: None,
        };
        if plan.adopting {
            for (hot_type, digest, name) in self.hot.entries()? {
                let small = is_small(&name);
                if self
                    .holders
                    .insert((hot_type, digest), fingerprint(&name))
                    .is_none()
                {
                    self.fill[map_class(hot_type, small)] += 1;
                }
                pinned.stale.insert((hot_type, digest), small);
            }
            for (hot_type, keys) in [
                (
                    HotType::A,
                    self.client_nets_a.keys().collect::<Result<Vec<_>, _>>()?,
                ),
                (
                    HotType::Aaaa,
                    self.client_nets_aaaa
                        .keys()
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            ] {
                for key in keys {
                    let generation = u32::from_be_bytes(key.data().service);
                    pinned.generation_floor = pinned.generation_floor.max(generation);
                    pinned.stale_networks.push((hot_type, key));
                }
            }
            pinned.adopted = Some(pinned.stale.len() + pinned.stale_networks.len());
        }
        self.pinned = Some(pinned);
        Ok(())
    }

    /// How many entries a previous daemon left in the pinned maps this
    /// dataplane took over; `None` when it did not take any over.
    pub fn adopted(&self) -> Option<usize> {
        self.pinned.as_ref().and_then(|pinned| pinned.adopted)
    }

    /// The lowest generation new client-dependent services may use.
    pub fn generation_floor(&self) -> u32 {
        self.pinned.as_ref().map_or(0, |p| p.generation_floor)
    }

    /// Removes what a previous daemon wrote and this one has not written
    /// again (names, client networks and signatures); returns how many
    /// entries went.
    /// Call once the zones and the services are written.
    pub fn remove_stale(&mut self) -> Result<usize, DataplaneError> {
        let Some(pinned) = &mut self.pinned else {
            return Ok(0);
        };
        let stale = std::mem::take(&mut pinned.stale);
        let networks = std::mem::take(&mut pinned.stale_networks);
        let removed = stale.len() + networks.len();
        for ((hot_type, digest), small) in stale {
            self.hot.remove_digest(digest, hot_type, small)?;
            if self.holders.remove(&(hot_type, digest)).is_some() {
                self.fill[map_class(hot_type, small)] -= 1;
            }
        }
        for (hot_type, key) in networks {
            let result = match hot_type {
                HotType::A => self.client_nets_a.remove(&key),
                HotType::Aaaa => self.client_nets_aaaa.remove(&key),
            };
            match result {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(error) => return Err(error.into()),
            }
        }
        // The signatures of what went, and of what was written again.
        let signatures = self.sigs.remove_unowned()?;
        Ok(removed + signatures)
    }

    /// Attaches through the pinned link: swaps this program onto it if a
    /// previous daemon left one, else attaches and pins the new link. Then
    /// removes other layouts' maps, which no program uses any more.
    pub(super) fn attach_pinned(
        &mut self,
        interface: &str,
        mode: AttachMode,
    ) -> Result<(), DataplaneError> {
        let Some(pinned) = &self.pinned else {
            return Ok(());
        };
        let link_path = pinned.dir.join(LINK);
        let layout_dir = pinned.layout_dir.clone();
        let dir = pinned.dir.clone();
        let program = xdp_program(&mut self.ebpf, names::PROGRAM)?;
        let link_id = if link_path.exists() {
            // While unpinned, this process's descriptor keeps the link (and
            // the old program) attached; it is pinned again at once.
            let link = PinnedLink::from_pin(&link_path)?
                .unpin()
                .map_err(|source| DataplaneError::Pin {
                    path: link_path.clone(),
                    source,
                })?;
            program.attach_to_link(XdpLink::try_from(link)?)?
        } else {
            program.attach(interface, mode.into()).map_err(|source| {
                DataplaneError::NoNativeXdp {
                    iface: interface.to_string(),
                    source,
                }
            })?
        };
        let link: FdLink = program.take_link(link_id)?.try_into()?;
        link.pin(&link_path).map_err(|error| DataplaneError::Pin {
            path: link_path.clone(),
            source: std::io::Error::other(error),
        })?;
        for entry in std::fs::read_dir(&dir).map_err(|source| DataplaneError::Pin {
            path: dir.clone(),
            source,
        })? {
            let path = entry
                .map_err(|source| DataplaneError::Pin {
                    path: dir.clone(),
                    source,
                })?
                .path();
            let other_layout = path != layout_dir
                && path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("layout-"));
            if other_layout {
                std::fs::remove_dir_all(&path)
                    .map_err(|source| DataplaneError::Pin { path, source })?;
            }
        }
        Ok(())
    }
}

/// Refuses a `dir` whose nearest existing ancestor is not a BPF filesystem:
/// pins cannot be made anywhere else, and the kernel's own error (ENOENT,
/// EPERM) would not say so.
fn check_bpffs(dir: &Path) -> Result<(), DataplaneError> {
    let existing = dir.ancestors().find(|path| path.exists()).unwrap_or(dir);
    match nix::sys::statfs::statfs(existing) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC => Ok(()),
        _ => Err(DataplaneError::NotBpffs {
            path: dir.to_owned(),
        }),
    }
}

/// `dnslb detach --pin DIR`: detaches the pinned program and removes the
/// pinned maps. Returns whether there was a link.
pub fn remove_pinned(dir: &Path) -> Result<bool, DataplaneError> {
    let link_path = dir.join(LINK);
    let had_link = link_path.exists();
    if had_link {
        // Unpinned and then closed, the link goes, and the program with it.
        drop(
            PinnedLink::from_pin(&link_path)?
                .unpin()
                .map_err(|source| DataplaneError::Pin {
                    path: link_path.clone(),
                    source,
                })?,
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| DataplaneError::Pin {
            path: dir.to_owned(),
            source,
        })?;
    }
    Ok(had_link)
}
