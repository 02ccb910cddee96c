#!/usr/bin/env bash
# Puts the `lakecat` command on your PATH: builds lakecat (dev profile, as scripts/demo.sh does;
# RELEASE=1 for an optimised build) and writes a small `lakecat` launcher into ~/.local/bin (or
# $PREFIX/bin) that runs this build with the ONNX Runtime library scripts/setup.sh installed,
# from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
profile=debug
if [[ "${RELEASE:-}" == 1 ]]; then
  cargo build --quiet --release
  profile=release
else
  cargo build --quiet
fi
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
binary="$target_dir/$profile/lakecat"
library="$(ls "$PWD"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | sort | tail -n 1)"
bin_dir="${PREFIX:-$HOME/.local}/bin"
mkdir -p "$bin_dir"
cat > "$bin_dir/lakecat" <<LAUNCHER
#!/bin/sh
# Written by $PWD/scripts/install.sh: the lakecat built in that checkout.
ORT_DYLIB_PATH="\${ORT_DYLIB_PATH:-$library}" exec "$binary" "\$@"
LAUNCHER
chmod +x "$bin_dir/lakecat"
echo "installed $bin_dir/lakecat (runs $binary)"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) echo "note: $bin_dir is not on your PATH; add it, e.g. export PATH=\"$bin_dir:\$PATH\"" ;;
esac
