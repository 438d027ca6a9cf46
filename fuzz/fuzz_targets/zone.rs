//! `zone`: see `dnslb_tests::targets::zone`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dnslb_tests::targets::zone(data));
