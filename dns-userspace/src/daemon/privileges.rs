//! Least privilege (`dnslb run --user NAME`) and the resources the daemon
//! takes at start.
//!
//! Everything that needs root is done first: loading and attaching the
//! program, opening its maps, binding port 53 and the other sockets. Then
//! the daemon becomes NAME, and keeps no capability at all: the maps and
//! the link are reached through descriptors it already holds (Linux 5.19
//! and newer let a process without CAP_BPF use map and link descriptors a
//! privileged one opened, even with `kernel.unprivileged_bpf_disabled`),
//! the XDP link detaches when its descriptor is closed, and the sockets
//! are bound. No new privileges can be gained afterwards either
//! (`no_new_privs`, set before any thread starts, so every thread and
//! child has it): a setuid program or file capabilities run by a command
//! check give nothing.

use std::ffi::CString;

use nix::{
    sys::{
        prctl,
        resource::{Resource, getrlimit, setrlimit},
    },
    unistd::{Gid, Uid, User, initgroups, setgid, setuid},
};

use crate::dataplane::kernel_older_than;

/// The oldest kernel that lets a process without CAP_BPF write the maps
/// through descriptors it was given (commit c8644cd0efe7).
const MIN_KERNEL_UNPRIVILEGED_MAPS: (u32, u32) = (5, 19);

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("--user {0}: no such user")]
    NoSuchUser(String),
    #[error("--user {0}: that is root; name an unprivileged user")]
    Root(String),
    #[error("--user {user}: looking the user up: {source}")]
    Lookup { user: String, source: nix::Error },
    #[error(
        "--user needs Linux 5.19 or newer, where the daemon can write the kernel maps \
         without CAP_BPF through descriptors it opened before; this is {release}"
    )]
    OldKernel { release: String },
    #[error("--user {user}: {step}: {source}")]
    Switch {
        user: String,
        step: &'static str,
        source: nix::Error,
    },
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
}

/// The user the daemon becomes, looked up (and checked) before anything
/// starts, so that a typo fails at once rather than after attaching.
#[derive(Clone, Debug)]
pub struct Target {
    name: String,
    uid: Uid,
    gid: Gid,
}

impl Target {
    pub fn lookup(name: &str) -> Result<Target, PrivilegeError> {
        let user = User::from_name(name)
            .map_err(|source| PrivilegeError::Lookup {
                user: name.to_owned(),
                source,
            })?
            .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_owned()))?;
        if user.uid.is_root() {
            return Err(PrivilegeError::Root(name.to_owned()));
        }
        if let Some(release) = kernel_older_than(MIN_KERNEL_UNPRIVILEGED_MAPS) {
            return Err(PrivilegeError::OldKernel { release });
        }
        Ok(Target {
            name: name.to_owned(),
            uid: user.uid,
            gid: user.gid,
        })
    }

    pub fn uid(&self) -> Uid {
        self.uid
    }

    pub fn gid(&self) -> Gid {
        self.gid
    }

    /// Becomes the user in every thread: its group and supplementary
    /// groups (`docker`, say, for a Docker pool), then its uid, which
    /// clears every capability.
    pub fn switch(&self) -> Result<(), PrivilegeError> {
        let step = |step: &'static str| {
            move |source| PrivilegeError::Switch {
                user: self.name.clone(),
                step,
                source,
            }
        };
        let name = CString::new(self.name.as_str())
            .map_err(|_| step("the name has a NUL byte")(nix::Error::EINVAL))?;
        initgroups(&name, self.gid).map_err(step("setting its groups"))?;
        setgid(self.gid).map_err(step("setting its group id"))?;
        setuid(self.uid).map_err(step("setting its user id"))?;
        Ok(())
    }
}

/// Sets `no_new_privs`, which every thread started afterwards, and every
/// child, inherits. Called before the runtime starts its threads.
pub fn forbid_new_privileges() -> Result<(), PrivilegeError> {
    prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)
}

/// Raises the open-files soft limit to the hard limit: every client
/// connection, map and socket is a descriptor, and the usual soft limit
/// (1,024) is far below what a server under load needs. Returns the limit
/// now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        return Some(soft);
    }
    Some(hard)
}
