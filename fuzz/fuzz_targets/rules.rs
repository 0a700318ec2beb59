//! The Sigma rule loader, on arbitrary rule files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tines_audit::fuzzing::rules(data));
