//! `gatehouse-issuer`: the token authority. `serve` is the default command.

use mimalloc::MiMalloc;

// glibc's per-thread arenas let RSS balloon under parallel argon2; mimalloc keeps it flat.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    gatehouse_issuer::cli::main()
}
