//! The kernel side, seen from userspace: loading and attaching the XDP
//! program, writing hot names into its maps, reading its counters.
//!
//! All `unsafe` that touches kernel memory layouts lives in `dns-common`'s
//! `Pod` impls; this module uses aya's typed maps, and `log` registers the
//! program's log ring buffer with tokio (its one `unsafe` block).

mod hot;
pub mod local;
pub mod log;
mod pin;
mod program;
mod signed;
mod steer;
mod sync;

pub use hot::{Endpoint, HotAnswer, HotError, HotType, HotValue};
pub use pin::remove_pinned;
pub use program::{
    AttachMode, Dataplane, DataplaneError, DataplaneOptions, EBPF_OBJECT, KernelCounters,
    PassThrough, TestOutcome, attach_pass_through, kernel_older_than, time_runs,
};
pub use signed::{HotSignatures, KernelClock, RrsetSigner, Rrsigs, SigFields};
pub use steer::{KernelServices, encode_draw};
pub use sync::{
    OnlineSigners, SkipReason, Skipped, SyncReport, hot_entries, renew_signatures, sync_hot,
};

/// The loaded program and its maps, shared by the tasks that write them.
pub type SharedDataplane = std::sync::Arc<crate::shared::Shared<Dataplane>>;
