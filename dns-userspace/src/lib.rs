//! dnslb: a DNS load balancer whose hot path runs in XDP.
pub mod dataplane;
