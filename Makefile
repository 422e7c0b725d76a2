# The two commands of the README: `make dev` runs the system locally, `make test` runs every test.
.PHONY: dev test setup fmt bench bench-smoke bench-issuer fuzz soak

dev:
	scripts/dev.sh

test:
	scripts/test.sh

# Installs whatever is missing (the pinned Rust toolchain, wasm32 target, wasm-bindgen-cli,
# npm packages, PostgreSQL running). Both commands above call it; it is idempotent.
setup:
	scripts/setup.sh

fmt:
	cargo fmt --all

# The benchmark suite against jose, jsonwebtoken and raw argon2 (not part of `make test`, which
# runs its smoke mode): writes docs/benchmarks.md and docs/benchmarks.svg. About 15 to 20 minutes (16.5 at a87d94c).
bench:
	scripts/bench.sh

bench-smoke:
	scripts/bench.sh --smoke

# Quick issuer load run on PostgreSQL (not part of `make test`): `make bench-issuer`.
bench-issuer:
	scripts/bench-issuer.sh

# Fuzz the shared core (not part of `make test`): `make fuzz FUZZ_SECS=600`.
FUZZ_SECS ?= 600
fuzz:
	scripts/fuzz.sh $(FUZZ_SECS)

# Bounded soak of the whole system (not part of `make test`): `make soak SOAK_MINUTES=10`.
SOAK_MINUTES ?= 10
soak:
	scripts/setup.sh
	cargo build --locked -p gatehouse-issuer
	scripts/build-edge.sh
	cargo run --locked --release -p gatehouse-tests --bin soak -- $(SOAK_MINUTES)
