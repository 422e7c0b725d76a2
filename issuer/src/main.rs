//! The Gatehouse issuer. The service itself arrives with its own issue; until then this binary
//! says so instead of pretending to serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("gatehouse-issuer: the issuer service is not built yet (see the issuer issue).");
    ExitCode::FAILURE
}
