#!/usr/bin/env bash
# backstop fuzzing: every cargo-fuzz target for a short, bounded time under
# AddressSanitizer (nightly). The stable corpus replay runs in `cargo test --workspace`
# (backstop-verify's tests/corpus_replay.rs); this stage looks for new inputs.
#
#   .ci/fuzz.sh                  all targets, FUZZ_SECONDS (default 10) each
#   .ci/fuzz.sh sliding_window   one target
#   FUZZ_SECONDS=300 .ci/fuzz.sh admission
#
# New interesting inputs go to target/fuzz-corpus/<target>/ (the committed corpus in
# fuzz/corpus/ is read, never written); a crash leaves its input in
# target/fuzz-artifacts/<target>/ and fails the stage with the command that replays it.
# Time on the shared 2-core machine: the ASan build of all six targets takes about 190 s
# from clean (15 s when target/fuzz is warm), then FUZZ_SECONDS + about 1 s per target;
# the default 10 s keeps a clean run near 4 minutes.
#
# Without a nightly toolchain the stage is skipped with a message, not failed: stable CI
# still replays the committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-10}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sliding_window keyed_window admission limits_toml trace_line sweep_tree)
fi

stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "==> $name"
  "$@"
  echo "<== $name: $((SECONDS - start)) s"
}

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain (rustup toolchain install nightly); skipping the fuzz stage."
  echo "fuzz: the committed corpora still replay on stable in cargo test -p backstop-verify."
  exit 0
fi

install_cargo_fuzz() {
  if cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly fuzz --version
  else
    cargo +nightly install cargo-fuzz --locked
  fi
}
stage "fuzz: cargo-fuzz" install_cargo_fuzz

# The sanitizer flags change every crate's build, so the fuzz build keeps its own target
# dir; the build is shared by all targets. RUSTFLAGS from the caller (.ci/run sets
# -D warnings) would turn a nightly-only lint into a failure here; cargo-fuzz sets its own.
export RUSTFLAGS=""
fuzz_target_dir="$root/target/fuzz"
stage "fuzz: build (ASan)" cargo +nightly fuzz build --sanitizer address --target-dir "$fuzz_target_dir"

run_target() {
  local target=$1
  local scratch="$root/target/fuzz-corpus/$target" artifacts="$root/target/fuzz-artifacts/$target/"
  mkdir -p "$scratch" "$artifacts"
  # -rss_limit_mb bounds a runaway input; -max_len keeps inputs near real sizes (a
  # limits file, a trace line, a few thousand operations).
  if ! cargo +nightly fuzz run --sanitizer address --target-dir "$fuzz_target_dir" "$target" \
      "$scratch" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$artifacts" 2>"$root/target/fuzz-$target.log"; then
    grep -E -A6 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|^SUMMARY' \
      "$root/target/fuzz-$target.log" | head -n 60 || tail -n 40 "$root/target/fuzz-$target.log"
    echo "fuzz: $target FAILED; full log target/fuzz-$target.log; inputs in $artifacts"
    echo "fuzz: replay with: cargo +nightly fuzz run --target-dir target/fuzz $target $artifacts<file>"
    return 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$root/target/fuzz-$target.log" || true
}

for target in "${targets[@]}"; do
  stage "fuzz: $target (${seconds} s)" run_target "$target"
done
echo "fuzz: all targets ran clean"
