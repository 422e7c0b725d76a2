#!/usr/bin/env bash
# The one run command (`make dev`): the issuer on SQLite, the worker under `wrangler dev`, and a
# demo origin. The issuer and the worker land with their own issues; until then this says so.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

missing=()
grep -q 'rocket' issuer/Cargo.toml || missing+=("issuer service (issuer/)")
[ -f wrangler.toml ] || missing+=("edge worker and wrangler.toml (edge/)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "gatehouse: nothing to run yet. Not built so far:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "What exists is exercised by: make test" >&2
  exit 2
fi
