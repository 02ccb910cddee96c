#!/usr/bin/env bash
# The test command of the README: sets up ONNX Runtime, the local S3 server (moto) and the
# Python package (built from python/), then
# runs every test of the workspace (unit tests, the integration tests in tests/it and the SQL
# logic tests in sql/*.slt).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# The benchmarks the README quotes are built (not run), so they cannot rot unnoticed; with the
# test profile they reuse the tests' build of every dependency.
# The Python package's crate is built by maturin (in setup.sh) and tested by pytest
# (tests/it/python.rs), not linked again here as a plain library.
cargo test --workspace --exclude lakecat-python --benches --no-run
# Every test binary reports, even after one fails.
cargo test --workspace --exclude lakecat-python --no-fail-fast "$@"
