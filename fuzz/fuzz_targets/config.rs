//! The configuration loader, on arbitrary file contents.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tines_audit::fuzzing::config(data));
