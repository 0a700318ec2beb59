//! The audit-log API response parser, on bytes as they come off the network.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tines_audit::fuzzing::wire_page(data));
