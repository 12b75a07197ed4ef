#!/usr/bin/env bash
# The Python half of the tests: builds the backstop-admission wheel with maturin into a
# virtualenv, installs it with the test dependencies from PyPI, then runs pytest and
# mypy --strict on the typed usage file. `cargo test -p backstop-python` runs this script
# (tests/python.rs), so the workspace's one test command runs the Python tests too.
#
#   bash crates/python/test.sh              # everything
#   bash crates/python/test.sh --prepare    # the venv and the wheel only (CI's own stage)
#   bash crates/python/test.sh -- -k sweep  # pass arguments to pytest
#
# Environment: BACKSTOP_PYTHON (interpreter for the venv, default python3),
# BACKSTOP_PYTHON_VENV (default target/python/venv), BACKSTOP_REDIS_URL (a redis-server
# the tests use; without it they start their own). Exit 77: the venv could not be set up
# (no python3, no network); the Rust test skips on it outside CI and fails in CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target="$root/target/python"
venv=${BACKSTOP_PYTHON_VENV:-$target/venv}
python=${BACKSTOP_PYTHON:-python3}

prepare_only=false
if [ "${1:-}" = "--prepare" ]; then prepare_only=true; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi

setup_failed() { echo "crates/python/test.sh: $*" >&2; exit 77; }

if [ ! -x "$venv/bin/python" ]; then
  command -v "$python" >/dev/null 2>&1 || setup_failed "no $python on PATH"
  "$python" -m venv "$venv" || setup_failed "cannot create a virtualenv at $venv"
fi
maturin_version=$(sed -n 's/^maturin = "\(.*\)"$/\1/p' "$root/Cargo.toml")
[ -n "$maturin_version" ] || { echo "no maturin version in the root Cargo.toml" >&2; exit 1; }
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "maturin~=$maturin_version.0" -r "$here/requirements-test.txt" \
  || setup_failed "pip could not install the test dependencies"

# The wheel: release (the benchmarks measure it), in its own target directory so that
# maturin's extension-module build does not invalidate the workspace's debug build.
rm -rf "$target/wheels"
"$venv/bin/maturin" build --release --quiet -m "$here/Cargo.toml" \
    --target-dir "$target/cargo" --out "$target/wheels" --interpreter "$venv/bin/python"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
    "$target"/wheels/backstop_admission-*.whl
$prepare_only && exit 0

cd "$here"
"$venv/bin/python" -m mypy --strict tests/typing_usage.py
exec "$venv/bin/python" -m pytest tests "$@"
