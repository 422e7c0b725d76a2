//! Replays the fuzzing seeds and every input a fuzzer once crashed on (shared/fuzz/), so fixed
//! crashes stay fixed. The harnesses are the fuzz targets' own (`shared/fuzz/harness.rs`).

use std::path::Path;

#[path = "../../fuzz/harness.rs"]
mod fuzzing;

fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["seeds", "regressions"] {
        // Each directory is kept (`.gitkeep`): one that went missing fails, not passes.
        let entries = std::fs::read_dir(root.join(dir).join(target))
            .unwrap_or_else(|e| panic!("fuzz/{dir}/{target}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                harness(&std::fs::read(&path).unwrap());
                count += 1;
            }
        }
    }
    count
}

#[test]
fn token_inputs() {
    assert!(replay("token", fuzzing::token) >= 2);
}

#[test]
fn jwks_inputs() {
    assert!(replay("jwks", fuzzing::jwks) >= 1);
}

#[test]
fn ed25519_inputs() {
    assert!(replay("ed25519", fuzzing::ed25519) >= 3);
}

#[test]
fn snapshot_inputs() {
    assert!(replay("snapshot", fuzzing::snapshot) >= 2);
}

#[test]
fn the_seeds_reach_the_deep_paths() {
    // The seeds must be valid, or the fuzzers would start from nothing.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let token = std::fs::read_to_string(root.join("token/valid")).unwrap();
    let verifier = gatehouse_shared::Verifier::new(
        fuzzing::keys(),
        gatehouse_shared::VerifierOptions::new("https://issuer.test", "api"),
    );
    assert!(verifier.verify(&token, 1_800_000_100).is_ok());
    let list = std::fs::read(root.join("snapshot/list.bin")).unwrap();
    assert_eq!(
        gatehouse_shared::RevocationList::from_bytes(&list)
            .unwrap()
            .len(),
        4
    );
    let signed = std::fs::read_to_string(root.join("snapshot/signed")).unwrap();
    let opts = gatehouse_shared::SnapshotOptions::new("https://issuer.test");
    assert!(
        crate::fixture::verify_snapshot(&signed, &fuzzing::keys(), &opts, 1_800_000_100).is_ok()
    );
}
