#!/usr/bin/env bash
# Side by side, in one run: lakecat's image preprocessing (1 thread, all cores) vs the
# Pillow + numpy reference, on the same files. Default: the full fashion image set next to the
# checkout (../shared/data/fashion/images), else the committed sample.
#   benches/compare_preprocess.sh [IMAGES_DIR] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES="${1:-../shared/data/fashion/images}"
[[ -d "$IMAGES" ]] || IMAGES=data/sample/fashion/images
SIZE="${2:-224}"
scripts/setup.sh
.venv/bin/python -c "import PIL, numpy" 2>/dev/null || .venv/bin/python -m pip install --quiet pillow numpy
cargo build --quiet --profile dev --bench preprocess
for round in 1 2; do
  cargo bench --quiet --profile dev --bench preprocess -- --images "$IMAGES" --size "$SIZE"
  .venv/bin/python benches/preprocess_reference.py --images "$IMAGES" --size "$SIZE"
done | tee /tmp/lakecat-preprocess.jsonl
.venv/bin/python - <<'PY'
import json
rows = [json.loads(line) for line in open("/tmp/lakecat-preprocess.jsonl")]
best = {}
for row in rows:
    key = (row["impl"], row["threads"])
    best[key] = max(best.get(key, 0), row["images_per_s"])
reference = best[("pillow+numpy", 1)]
for (impl, threads), rate in sorted(best.items()):
    print(f"{impl:14s} threads={threads}: {rate:8.1f} images/s  ({rate / reference:.2f}x the reference)")
one = best[("lakecat", 1)]
many = max(rate for (impl, threads), rate in best.items() if impl == "lakecat")
print(f"lakecat all cores / one thread: {many / one:.2f}x")
PY
