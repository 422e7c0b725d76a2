#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_shared::fuzzing::ed25519(data));
