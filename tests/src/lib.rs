//! dnslb's integration rig: hand-built frames for `BPF_PROG_TEST_RUN`,
//! network namespaces joined by veth, the real daemon and real clients.
//! Shared by the integration tests and by `cargo xtask demo` and `bench`.

pub mod backend;
pub mod browser;
pub mod daemon;
pub mod docker;
pub mod etcd;
pub mod frame;
pub mod fuzz;
pub mod load;
pub mod mmdb;
pub mod netns;
pub mod oracle;
pub mod peers;
pub mod process;
pub mod resolvers;
pub mod signed;
pub mod targets;
pub mod testrun;
