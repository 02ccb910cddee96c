#!/usr/bin/env bash
# Training quality and speed on the public data next to the checkout (../shared/data):
#   1. fashion (8,304 products, images + titles): `lakecat train` with default settings
#      (frozen MobileNetV2 at 224 px + text), Delta table → bundle, wall time and samples/s per
#      phase, first with an empty feature cache, then again with the cache filled; the
#      text-only, image-only and whole-words-only (no character n-grams) ablations (and, with LAKECAT_BENCH_TINY=1, the tiny CNN; with
#      LAKECAT_BENCH_FINE_TUNE=1, the last MobileNetV2 layer trained); `lakecat eval` of each
#      on its validation split;
#   2. a bag-of-words baseline on titles alone on the same split for reference
#      (scikit-learn logistic regression, from PyPI into .venv);
#   3. flipkart (729 products, long descriptions): level-2 top-1;
#   4. the text-only linear baseline on each default bundle's split (benches/linear_baseline.py);
#   5. the category's own words removed from the validation rows' titles
#      (benches/category_words.py): the default and text-only bundles, and the baseline, again.
# Results as JSON lines in $WORK/results.jsonl; benches/TRAINING.md reports a run.
#   benches/train.sh [PROFILE]      PROFILE: release (default, as the target says) or dev
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${1:-release}"
DATA="${LAKECAT_DATA:-../shared/data}"
WORK="${LAKECAT_BENCH_DIR:-/tmp/lakecat-bench-train}"
[[ -d "$DATA/fashion" ]] || { echo "needs the public data in $DATA (set LAKECAT_DATA)" >&2; exit 1; }
scripts/setup.sh
cargo build --quiet --profile "$PROFILE"
DIR="$PROFILE"; [[ "$PROFILE" == dev ]] && DIR=debug
BIN="${CARGO_TARGET_DIR:-target}/$DIR/lakecat"
rm -rf "$WORK" && mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"

"$BIN" import "$DATA/fashion/products.csv" --output "$WORK/fashion" --id id --title productDisplayName \
  --images "$DATA/fashion/images" --labels masterCategory,subCategory,articleType > /dev/null
"$BIN" import "$DATA/flipkart/products.csv" --output "$WORK/flipkart" --id uniq_id --title product_name \
  --description description --images "$DATA/flipkart/images" --image-column image \
  --category-tree category_tree --max-depth 2 > /dev/null

# train NAME TABLE FLAGS…: trains, evaluates on the validation split, appends one JSON line.
train() {
  local name="$1" table="$2"; shift 2
  local start end
  start=$(date +%s.%N)
  "$BIN" train --table "$WORK/$table@0" --output "$WORK/models/$name" --feature-cache "$WORK/feature-cache" \
    --json "$@" > "$WORK/$name.train.json"
  end=$(date +%s.%N)
  "$BIN" eval --model "$WORK/models/$name" --table "$WORK/$table@0" --output "$WORK/eval/$name" --json \
    > "$WORK/$name.eval.json"
  python3 - "$name" "$start" "$end" "$WORK/$name.train.json" "$WORK/$name.eval.json" >> "$RESULTS" <<'PY'
import json, sys
name, start, end, train, evaluation = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
t, e = json.load(open(train)), json.load(open(evaluation))
m = e["metrics"]
print(json.dumps({"model": name, "wall_seconds": round(end - start, 1), "classes": t["classes"],
  "train_rows": t["train_rows"], "validation_rows": t["validation_rows"], "times": t["times"],
  "top1": m["top1"], "hierarchy_win": m["hierarchy_win"], "fallback": m["fallback"],
  "per_level": m["per_level"], "temperature": t["temperature"], "skipped": t["skipped"],
  "features_reused": t["features_reused"]}))
PY
  tail -1 "$RESULTS"
}

train fashion fashion
train fashion-cached fashion
train fashion-text-only fashion --no-images
train fashion-image-only fashion --no-text
train fashion-words-only fashion --text-char-ngrams none
# The tiny CNN trained from scratch (~8 min here, weaker): only on request.
[[ -n "${LAKECAT_BENCH_TINY:-}" ]] && train fashion-tiny-cnn fashion --backbone tiny
train flipkart flipkart --min-count 5
# Fine-tuning the last MobileNetV2 layer (features.18) is ~20 min here: only on request.
[[ -n "${LAKECAT_BENCH_FINE_TUNE:-}" ]] && train fashion-fine-tuned fashion --trainable-layers 1

# Reference: bag-of-words logistic regression on titles, on the same validation split.
scripts/setup.sh --bench-python
PYTHONPATH="benches:$(ls -d .venv/lib/python3*/site-packages | head -1)" python3 - "$DATA/fashion/products.csv" "$WORK/models/fashion/manifest.json" >> "$RESULTS" <<'PY'
import csv, json, sys
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from linear_baseline import split_and_min_count, validation_test
rows = list(csv.DictReader(open(sys.argv[1])))
validation = validation_test(split_and_min_count(sys.argv[2])[0])
label = lambda r: " > ".join([r["masterCategory"], r["subCategory"], r["articleType"]])
train = [r for r in rows if not validation(r["id"])]
test = [r for r in rows if validation(r["id"])]
vec = CountVectorizer(binary=True)
x = vec.fit_transform([r["productDisplayName"] for r in train])
model = LogisticRegression(max_iter=2000, C=10).fit(x, [label(r) for r in train])
pred = model.predict(vec.transform([r["productDisplayName"] for r in test]))
top1 = sum(p == label(r) for p, r in zip(pred, test)) / len(test)
print(json.dumps({"model": "bag-of-words logistic regression (titles)", "top1": top1, "validation_rows": len(test)}))
PY
tail -1 "$RESULTS"
# The text-only linear reference to beat (issue 17), on each default bundle's own split and classes.
PYTHONPATH="$(ls -d .venv/lib/python3*/site-packages | head -1)" python3 benches/linear_baseline.py fashion \
  "$DATA/fashion/products.csv" "$WORK/models/fashion/manifest.json" >> "$RESULTS"
PYTHONPATH="$(ls -d .venv/lib/python3*/site-packages | head -1)" python3 benches/linear_baseline.py flipkart \
  "$DATA/flipkart/products.csv" "$WORK/models/flipkart/manifest.json" >> "$RESULTS"
tail -2 "$RESULTS"
# Where images earn their keep: the validation rows' titles without the words of any category
# name; the same bundles evaluated on them, and the baseline trained and scored on them.
PYTHONPATH="$(ls -d .venv/lib/python3*/site-packages | head -1)" python3 benches/category_words.py fashion \
  "$DATA/fashion/products.csv" "$WORK/models/fashion" "$WORK/fashion-no-category-words.csv" >> "$RESULTS"
"$BIN" import "$WORK/fashion-no-category-words.csv" --output "$WORK/fashion-no-category-words" --id id \
  --title productDisplayName --images "$DATA/fashion/images" --labels masterCategory,subCategory,articleType > /dev/null
for name in fashion fashion-text-only; do
  "$BIN" eval --model "$WORK/models/$name" --table "$WORK/fashion-no-category-words@0" \
    --output "$WORK/eval/$name-no-category-words" --json > "$WORK/$name-no-category-words.eval.json"
  python3 -c "import json, sys; m = json.load(open(sys.argv[2]))['metrics']
print(json.dumps({'model': sys.argv[1] + ', category words removed', 'top1': m['top1'], 'per_level': m['per_level']}))" \
    "$name" "$WORK/$name-no-category-words.eval.json" >> "$RESULTS"
done
PYTHONPATH="$(ls -d .venv/lib/python3*/site-packages | head -1)" python3 benches/linear_baseline.py fashion \
  "$WORK/fashion-no-category-words.csv" "$WORK/models/fashion/manifest.json" >> "$RESULTS"
tail -4 "$RESULTS"
