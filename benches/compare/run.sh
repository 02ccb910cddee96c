#!/usr/bin/env bash
# lakecat vs the tools users would pick instead, on the same Delta table and model bundle, in one
# run: (a) `lakecat sql` with categorize, (b) the Python reference (pyarrow + Pillow + numpy +
# the bundle's text vectorizer in Python + onnxruntime), (c) Daft (its image decode/resize + a batch UDF
# calling onnxruntime), plus bare onnxruntime on tensors made in advance (the model-bound limit).
# Each writes leaf id, confidence and every level per row to a Delta table. Rounds alternate the
# pipelines; medians of rows/s, CPU time and peak RSS (/usr/bin/time). Then the agreement on the
# predicted leaf, a Markdown table and a plot of lakecat's rows/s against the batch size.
#
#   benches/compare/run.sh
# (Daft's Delta writer imports pyiceberg, hence that package.)
# Environment: LAKECAT_DATA (../shared/data), LAKECAT_BENCH_DIR (/tmp/lakecat-bench-compare),
# ROUNDS (3), LIGHT_ROWS ("10000 100000"), MOBILENET_ROWS ("2000"), LIGHT_BUNDLE / MOBILENET_BUNDLE
# (bundles to use instead of training them here).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${LAKECAT_DATA:-../shared/data}"
WORK="${LAKECAT_BENCH_DIR:-/tmp/lakecat-bench-compare}"
ROUNDS="${ROUNDS:-3}"
LIGHT_ROWS="${LIGHT_ROWS:-10000 100000}"
MOBILENET_ROWS="${MOBILENET_ROWS:-2000}"
[[ -d "$DATA/fashion" ]] || { echo "needs the public data in $DATA (set LAKECAT_DATA)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt install time)" >&2; exit 1; }

scripts/setup.sh
VENV=benches/compare/.venv
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import daft, deltalake, PIL, matplotlib, pyiceberg" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check onnxruntime==1.31.1 pillow==13.0.0 numpy==2.4.6 \
    pyarrow==25.0.1 deltalake==1.6.6 daft==0.7.26 pyiceberg==0.12.0 matplotlib==3.11.2
fi
PY="$VENV/bin/python"
cargo build --quiet --profile dev
BIN="${CARGO_TARGET_DIR:-target}/debug/lakecat"
mkdir -p "$WORK/out"
RUNS="$WORK/runs.jsonl"
: > "$RUNS"

[[ -d "$WORK/fashion/_delta_log" ]] || "$BIN" import "$DATA/fashion/products.csv" --output "$WORK/fashion" \
  --id id --title productDisplayName --images "$DATA/fashion/images" \
  --labels masterCategory,subCategory,articleType > /dev/null
LIGHT="${LIGHT_BUNDLE:-$WORK/models/light}"
MOBILENET="${MOBILENET_BUNDLE:-$WORK/models/mobilenet}"
# The light model is there to time the image path cheaply, so its images are kept at a set
# weight: left to the sign test, the tiny CNN's few fixed rows leave a text-only bundle.
[[ -f "$LIGHT/manifest.json" ]] || "$BIN" train --table "$WORK/fashion@0" --output "$LIGHT" --backbone tiny \
  --epochs 4 --hierarchy-epochs 1 --image-weights 0.2 > /dev/null
[[ -f "$MOBILENET/manifest.json" ]] || "$BIN" train --table "$WORK/fashion@0" --output "$MOBILENET" > /dev/null
for rows in $LIGHT_ROWS $MOBILENET_ROWS; do
  [[ -d "$WORK/products-$rows/_delta_log" ]] || "$PY" benches/compare/make_table.py --source "$WORK/fashion" \
    --rows "$rows" --output "$WORK/products-$rows"
done

# measure MODEL ROWS PIPELINE OUTPUT COMMAND…: one timed run, one JSON line in $RUNS (with the
# batch size when BATCH is set).
measure() {
  local model="$1" rows="$2" pipeline="$3" output="$4"; shift 4
  rm -rf "$output"
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time.txt" "$@" > /dev/null
  read -r wall user sys rss < "$WORK/time.txt"
  python3 -c "import json,sys; w,u,s,r=map(float,sys.argv[4:8]); print(json.dumps({'model':sys.argv[1],'rows':int(sys.argv[2]),
'pipeline':sys.argv[3],'seconds':w,'rows_per_second':round(int(sys.argv[2])/w,1),'cpu_seconds':round(u+s,1),
'peak_rss_mib':round(r/1024,1),**({'batch':int(sys.argv[8])} if sys.argv[8] else {})}))" \
    "$model" "$rows" "$pipeline" "$wall" "$user" "$sys" "$rss" "${BATCH:-}" | tee -a "$RUNS"
}

# compare MODEL BUNDLE ROWS: the three pipelines, alternating, ROUNDS times; then bare ORT.
compare() {
  local model="$1" bundle="$2" rows="$3" table="$WORK/products-$3" out="$WORK/out/$1-$3"
  for round in $(seq "$ROUNDS"); do
    measure "$model" "$rows" lakecat "$out-lakecat" "$BIN" sql --table "products=$table" --model "m=$bundle" \
      --output-table "$out-lakecat" \
      "SELECT product_id, c.category_id AS category_id, c.confidence AS confidence, c.level_1 AS level_1,
         c.level_2 AS level_2, c.level_3 AS level_3
       FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)"
    (cd benches/compare && measure "$model" "$rows" python "$out-python" \
      .venv/bin/python reference.py --table "$table" --bundle "$bundle" --output "$out-python")
    (cd benches/compare && measure "$model" "$rows" daft "$out-daft" \
      .venv/bin/python daft_pipeline.py --table "$table" --bundle "$bundle" --output "$out-daft")
    (cd benches/compare && .venv/bin/python bare_ort.py --bundle "$bundle" --rows "$rows") \
      | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(model='$model', rows=$rows); print(json.dumps(r))" \
      | tee -a "$RUNS"
  done
}

for rows in $LIGHT_ROWS; do compare light "$LIGHT" "$rows"; done
for rows in $MOBILENET_ROWS; do compare mobilenet "$MOBILENET" "$rows"; done

# lakecat's rows/s against the batch size (light model, the first table size).
SWEEP_ROWS="${LIGHT_ROWS%% *}"
for round in $(seq "$ROUNDS"); do
  for batch in 16 32 64 128 256; do
    BATCH="$batch" measure light "$SWEEP_ROWS" lakecat-batch "$WORK/out/sweep" "$BIN" sql --batch-size "$batch" \
      --table "products=$WORK/products-$SWEEP_ROWS" --model "m=$LIGHT" --output-table "$WORK/out/sweep" \
      "SELECT product_id, c.category_id AS category_id
       FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)"
  done
done
"$PY" benches/compare/summarize.py "$WORK" | tee "$WORK/summary.md"
echo "plot: $WORK/rows-per-second-vs-batch.png"
