#!/usr/bin/env bash
# `lakecat serve` (Arrow Flight SQL) vs `lakecat sql`, side by side in one run:
#   1. fetching the predictions of the fashion set: through Flight SQL (the ADBC driver, result
#      written as CSV) vs `lakecat sql --format csv` to a file;
#   2. scoring the fashion set with categorize() through Flight SQL vs `lakecat sql`.
# Each Flight SQL run is a fresh client process (Python start, connect, query, write) against a
# server started once; each `lakecat sql` run is a fresh process (start, model load, query,
# write). Data: the public fashion set next to the checkout (../shared/data/fashion), else the
# committed sample. Model: the light model of benches/compare (tiny CNN + text), trained here.
# Medians of ROUNDS alternating runs.
#   benches/flight.sh [FASHION_DIR] [ROUNDS]     (REUSE=1: keep the tables and model of the last run)
set -euo pipefail
cd "$(dirname "$0")/.."
FASHION="${1:-../shared/data/fashion}"
[[ -d "$FASHION" ]] || FASHION=data/sample/fashion
ROUNDS="${2:-3}"
WORK="${LAKECAT_BENCH_DIR:-/tmp/lakecat-bench-flight}"
scripts/setup.sh --test
cargo build --quiet
BIN="${CARGO_TARGET_DIR:-target}/debug/lakecat"
MODEL="$WORK/light"
# REUSE=1 keeps the lakehouse and model of an earlier run of this script.
if [[ "${REUSE:-}" != 1 || ! -d "$WORK/predictions" ]]; then
  rm -rf "$WORK" && mkdir -p "$WORK"
  IMPORT=(--id id --title productDisplayName --labels masterCategory,subCategory,articleType)
  "$BIN" import "$FASHION/products.csv" --output "$WORK/fashion" --images "$FASHION/images" "${IMPORT[@]}" > /dev/null
  "$BIN" train --table "$WORK/fashion" --output "$MODEL" --backbone tiny --epochs 4 --hierarchy-epochs 1 > /dev/null 2>&1
  "$BIN" refresh --model "$MODEL" --source "$WORK/fashion" --target "$WORK/predictions" > /dev/null 2>&1
fi
ROWS=$(tail -n +2 "$FASHION/products.csv" | wc -l)

TABLES=(--table "predictions=$WORK/predictions" --table "products=$WORK/fashion" --model "$MODEL")
export LAKECAT_SERVE_TOKEN=bench-token FLIGHT_TOKEN=bench-token
"$BIN" serve "${TABLES[@]}" --address 127.0.0.1:0 2> "$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2> /dev/null' EXIT
for _ in $(seq 600); do grep -q "listening on" "$WORK/serve.log" && break; sleep 0.1; done
URI=$(grep -o 'grpc://[0-9.:]*' "$WORK/serve.log" | head -1)

FETCH="SELECT product_id, category_id, category, level_1, level_2, level_3, confidence, model, content_hash FROM predictions"
SCORE="SELECT product_id, c.category, c.confidence FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)"
# measure NAME FUNCTION ARGS…: one JSON line with wall seconds and rows/s.
measure() {
  local name="$1" start end seconds; shift
  start=$(date +%s.%N)
  "$@" 2> "$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  seconds=$(echo "$end - $start" | bc)
  echo "{\"case\": \"$name\", \"seconds\": $seconds, \"rows_per_second\": $(echo "$ROWS / $seconds" | bc)}"
}
client() { .venv/bin/python tests/flight/client.py "$URI" query "$1" "$2" > "$WORK/client.json"; grep -q '"ok": true' "$WORK/client.json"; }
sql_csv() { "$BIN" sql "${TABLES[@]}" --format csv "$1" > "$2"; }
for round in $(seq "$ROUNDS"); do
  measure fetch_sql_csv sql_csv "$FETCH" "$WORK/fetch-sql.csv"
  measure fetch_flight_csv client "$FETCH" "$WORK/fetch-flight.csv"
  measure score_sql_csv sql_csv "$SCORE" "$WORK/score-sql.csv"
  measure score_flight_csv client "$SCORE" "$WORK/score-flight.csv"
done | tee "$WORK/runs.jsonl"
# Same rows both ways (CSV writers differ in quoting and float digits: compare parsed values).
.venv/bin/python - "$WORK" <<'PY'
import sys, pyarrow.csv as csv
work = sys.argv[1]
for case in ("fetch", "score"):
    a = csv.read_csv(f"{work}/{case}-sql.csv").sort_by("product_id")
    b = csv.read_csv(f"{work}/{case}-flight.csv").sort_by("product_id")
    assert a.num_rows == b.num_rows, (case, a.num_rows, b.num_rows)
    assert a.column("category").equals(b.column("category")), case
PY

.venv/bin/python - "$WORK/runs.jsonl" "$ROWS" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
rows = int(sys.argv[2])
def median(case):
    return statistics.median(run["seconds"] for run in runs if run["case"] == case)
for what in ("fetch", "score"):
    sql, flight = median(f"{what}_sql_csv"), median(f"{what}_flight_csv")
    print(f"{what} {rows} rows: lakecat sql --format csv {sql:.2f} s ({rows / sql:,.0f} rows/s), "
          f"Flight SQL {flight:.2f} s ({rows / flight:,.0f} rows/s): Flight rows/s = {sql / flight:.2f} x lakecat sql")
PY
