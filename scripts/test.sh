#!/usr/bin/env bash
# The test command of the README: sets up ONNX Runtime and the local S3 server (moto), then
# runs every test of the workspace (unit tests, the integration tests in tests/it and the SQL
# logic tests in sql/*.slt).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# The benchmarks the README quotes are built (not run), so they cannot rot unnoticed; with the
# test profile they reuse the tests' build of every dependency.
cargo test --workspace --benches --no-run
# Every test binary reports, even after one fails.
cargo test --workspace --no-fail-fast "$@"
