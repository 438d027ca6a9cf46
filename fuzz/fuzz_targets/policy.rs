//! `policy`: see `dnslb_tests::targets::policy`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dnslb_tests::targets::policy(data));
