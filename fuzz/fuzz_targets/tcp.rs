//! `tcp`: see `dnslb_tests::targets::tcp`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dnslb_tests::targets::tcp(data));
