# Sourced first by the scripts whose tools run from other directories (the e2e tests in tests/,
# cargo in edge/, the JS harness and the benchmark): a relative CARGO_TARGET_DIR is made
# absolute, meaning what it means to cargo, relative to where the command was started.
case ${CARGO_TARGET_DIR:-} in "" | /*) ;; *) export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR" ;; esac
