#![no_main]

// The self-check of scripts/fuzz.sh: this target crashes on its own seed, so every fuzzing run
// first proves that a crash makes the script fail (it once passed whatever the fuzzers found).
libfuzzer_sys::fuzz_target!(|data: &[u8]| assert!(
    !data.starts_with(b"planted crash"),
    "planted crash"
));
