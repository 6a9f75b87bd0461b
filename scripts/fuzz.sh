#!/usr/bin/env bash
# `make fuzz`: every cargo-fuzz target for a bounded time, on the corpus kept under fuzz/corpus
# (new inputs it finds are added there). Needs the nightly toolchain (libFuzzer, sanitizers);
# cargo-fuzz is installed into .tools/ on first use. The last line is the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
targets=(event_json certificate crl webhook_request)
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "make fuzz needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
if [ ! -x .tools/bin/cargo-fuzz ]; then
  cargo install --locked --quiet --root .tools cargo-fuzz || exit 1
fi
export PATH="$PWD/.tools/bin:$PATH"
crashes=0
mkdir -p fuzz/logs
for target in "${targets[@]}"; do
  echo "== $target (${seconds} s)"
  log="fuzz/logs/$target.log"
  # Bounded memory too: libFuzzer fails an input that makes RSS grow past the limit.
  (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=512 -max_len=65536 -print_final_stats=1) >"$log" 2>&1
  status=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written|error)" "$log" | tail -6
  found=$(ls fuzz/artifacts/"$target"/ 2>/dev/null | grep -cE '^(crash|oom|leak|timeout)-' || true)
  if [ "$status" != 0 ] && [ "$found" = 0 ]; then
    echo "   cargo fuzz failed without an artifact (see $log)"
    found=1
  fi
  crashes=$((crashes + found))
  # Keep the corpus in the repository minimal: the fewest inputs that reach the same coverage.
  (cd fuzz && cargo +nightly fuzz cmin "$target" "corpus/$target") >>"$log" 2>&1 || true
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, ${crashes} crashes"
[ "$crashes" = 0 ]
