#!/usr/bin/env bash
# The Python package (lakecat's functions and Delta scan inside datafusion-python, through
# DataFusion's FFI) vs `lakecat sql`, side by side in one run: scoring the fashion set with
# categorize() and writing the result as CSV. Each run is a fresh process on both sides (start,
# model load, table open, query, write); a `SELECT 1` run of each, with the same set-up, gives
# its fixed cost, so the steady rows/s of both sides (rows / (run - fixed)) can be compared too.
# Data: the public fashion set next to the checkout (../shared/data/fashion), else the
# committed sample. Model: the light model of benches/compare (tiny CNN + text), trained here.
# Medians of ROUNDS alternating runs. Both sides are the dev profile (what scripts/setup.sh
# --test builds the wheel with).
#   benches/python.sh [FASHION_DIR] [ROUNDS]     (REUSE=1: keep the table and model of the last run)
set -euo pipefail
cd "$(dirname "$0")/.."
FASHION="${1:-../shared/data/fashion}"
[[ -d "$FASHION" ]] || FASHION=data/sample/fashion
ROUNDS="${2:-3}"
WORK="${LAKECAT_BENCH_DIR:-/tmp/lakecat-bench-python}"
scripts/setup.sh --test
cargo build --quiet
BIN="${CARGO_TARGET_DIR:-target}/debug/lakecat"
MODEL="$WORK/light"
if [[ "${REUSE:-}" != 1 || ! -d "$MODEL" ]]; then
  rm -rf "$WORK" && mkdir -p "$WORK"
  IMPORT=(--id id --title productDisplayName --labels masterCategory,subCategory,articleType)
  "$BIN" import "$FASHION/products.csv" --output "$WORK/fashion" --images "$FASHION/images" "${IMPORT[@]}" > /dev/null
  "$BIN" train --table "$WORK/fashion" --output "$MODEL" --backbone tiny --epochs 4 --hierarchy-epochs 1 > /dev/null 2>&1
fi
ROWS=$(tail -n +2 "$FASHION/products.csv" | wc -l)

cat > "$WORK/score.py" <<'PY'
import sys
import datafusion
import pyarrow
import pyarrow.csv
import lakecat

table, model, sql, out = sys.argv[1:5]
ctx = datafusion.SessionContext(lakecat.session_config())
lakecat.register(ctx, model)
lakecat.register_table(ctx, "products", table)
result = ctx.sql(sql).to_arrow_table()
# pyarrow's CSV writer takes no view types (DataFusion 55 returns strings as views).
plain = [pyarrow.field(f.name, pyarrow.string() if f.type == pyarrow.string_view() else f.type) for f in result.schema]
pyarrow.csv.write_csv(result.cast(pyarrow.schema(plain)), out)
PY
SCORE="SELECT product_id, c.category AS category, c.confidence AS confidence FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)"
FIXED="SELECT 1 AS one"
# measure NAME COMMAND…: one JSON line with the wall seconds.
measure() {
  local name="$1" start end; shift
  start=$(date +%s.%N)
  "$@" 2> "$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "{\"case\": \"$name\", \"seconds\": $(awk "BEGIN { printf \"%.3f\", $end - $start }")}"
}
sql_csv() { "$BIN" sql --table "products=$WORK/fashion" --model "$MODEL" --format csv "$1" > "$2"; }
python_csv() { .venv/bin/python "$WORK/score.py" "$WORK/fashion" "$MODEL" "$1" "$2"; }
for round in $(seq "$ROUNDS"); do
  measure fixed_sql sql_csv "$FIXED" "$WORK/fixed-sql.csv"
  measure fixed_python python_csv "$FIXED" "$WORK/fixed-python.csv"
  measure score_sql sql_csv "$SCORE" "$WORK/score-sql.csv"
  measure score_python python_csv "$SCORE" "$WORK/score-python.csv"
done | tee "$WORK/runs.jsonl"

.venv/bin/python - "$WORK" "$ROWS" <<'PY'
import json, statistics, sys
import pyarrow.compute as pc
import pyarrow.csv as csv
work, rows = sys.argv[1], int(sys.argv[2])
# The same predictions both ways.
a = csv.read_csv(f"{work}/score-sql.csv").sort_by("product_id")
b = csv.read_csv(f"{work}/score-python.csv").sort_by("product_id")
assert a.num_rows == b.num_rows == rows, (a.num_rows, b.num_rows, rows)
assert a.column("category").equals(b.column("category"))
assert pc.max(pc.abs(pc.subtract(a.column("confidence"), b.column("confidence")))).as_py() < 1e-5
runs = [json.loads(line) for line in open(f"{work}/runs.jsonl")]
def median(case):
    return statistics.median(run["seconds"] for run in runs if run["case"] == case)
sql, python = median("score_sql"), median("score_python")
fixed_sql, fixed_python = median("fixed_sql"), median("fixed_python")
steady_sql, steady_python = rows / (sql - fixed_sql), rows / (python - fixed_python)
print(f"score {rows} rows, fresh process each: lakecat sql {sql:.2f} s ({rows / sql:,.0f} rows/s), "
      f"Python ctx.sql {python:.2f} s ({rows / python:,.0f} rows/s): {sql / python:.2f} x")
print(f"fixed cost (SELECT 1 with the same set-up): lakecat sql {fixed_sql:.2f} s, Python {fixed_python:.2f} s")
print(f"steady rows/s (run - fixed): lakecat sql {steady_sql:,.0f}, Python {steady_python:,.0f}: "
      f"{steady_python / steady_sql:.2f} x")
PY
