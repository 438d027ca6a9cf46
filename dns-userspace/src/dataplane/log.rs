//! The XDP program's log (`--xdp-log`): aya-log records from its ring
//! buffer, moved into the daemon's log as they arrive.

use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};

/// What reads the program's log records into the daemon's log.
pub type XdpLogger = EbpfLogger<&'static dyn log::Log>;

/// Forwards records until the runtime stops; the ring buffer's descriptor
/// wakes the task when records arrive.
pub async fn forward(logger: XdpLogger) -> std::io::Result<()> {
    // SAFETY: the descriptor is the logger's ring buffer map, which the
    // logger owns and keeps open, unchanged, for as long as it lives; the
    // logger lives inside the `AsyncFd` until the `AsyncFd` is dropped.
    let mut records = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(|error| error.into_parts().1)?;
    loop {
        let mut ready = records.readable_mut().await?;
        ready.get_inner_mut().flush();
        ready.clear_ready();
    }
}
