#!/usr/bin/env bash
# `make mutants`: cargo-mutants over jitr-domain's decision-critical modules (decision, binding,
# revocation, profile validation, naming, the webhook's signature check and envelope). Each
# mutant is a small change to the code (a condition inverted, a function returning a default);
# a test must fail for it to count as caught. Missed mutants that cannot be told apart from the
# original are listed with their reason in docs/mutants.md. Not part of `make test` (see
# docs/mutants.md for the duration on 2 cores). The last line is the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
version=27.1.0
if ! .tools/bin/cargo-mutants mutants --version 2>&1 | grep -q "$version"; then
  echo "installing cargo-mutants $version into .tools (about 3 minutes, once)"
  cargo install --locked --quiet --root .tools --version "$version" cargo-mutants || exit 1
fi
out="${MUTANTS_OUT:-${CARGO_TARGET_DIR:-target}/mutants}"
mkdir -p "$out"
files=(
  crates/domain/src/decision/mod.rs
  crates/domain/src/decision/plan.rs
  crates/domain/src/decision/standing.rs
  crates/domain/src/binding.rs
  crates/domain/src/revocation/mod.rs
  crates/domain/src/revocation/crl.rs
  crates/domain/src/revocation/serials.rs
  crates/domain/src/revocation/cache.rs
  crates/domain/src/revocation/mark.rs
  crates/domain/src/profiles/document.rs
  crates/domain/src/naming.rs
  crates/domain/src/webhook.rs
)
args=()
for file in "${files[@]}"; do args+=(--file "$file"); done
started=$(date +%s)
# Only jitr-domain's own tests judge a mutant: they build without the SDK, so a mutant costs
# seconds, and a rule of the domain must be pinned by the domain's tests.
.tools/bin/cargo-mutants mutants --package jitr-domain --test-package jitr-domain "${args[@]}" \
  --output "$out" --jobs "${MUTANTS_JOBS:-2}" --timeout "${MUTANTS_TIMEOUT:-30}" \
  --no-shuffle --colors never "$@" >"$out/console.log" 2>&1
status=$?
tail -3 "$out/console.log"
python3 scripts/mutants_summary.py "$out/mutants.out/outcomes.json" "$(( $(date +%s) - started ))"
summary=$?
# cargo-mutants exits 2 when a mutant was missed, 3 on a timeout: the summary judges.
[ "$status" = 0 ] || [ "$status" = 2 ] || [ "$status" = 3 ] || exit "$status"
exit "$summary"
