#!/usr/bin/env bash
# The README's main command: sets up ONNX Runtime, builds lakecat and runs `lakecat demo`
# (a local Delta lakehouse from the committed sample, a model trained on it, scored in SQL).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --quiet -- demo "$@"
