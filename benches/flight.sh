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
SCORE="SELECT product_id, c.category AS category, c.confidence AS confidence FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)"
# measure NAME FUNCTION ARGS…: one JSON line with wall seconds and rows/s.
measure() {
  local name="$1" start end seconds; shift
  start=$(date +%s.%N)
  "$@" 2> "$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  seconds=$(awk "BEGIN { printf \"%.3f\", $end - $start }")
  echo "{\"case\": \"$name\", \"seconds\": $seconds, \"rows_per_second\": $(awk "BEGIN { printf \"%d\", $ROWS / $seconds }")}"
}
# The client's own time (connect, query, fetch, write; no Python start-up) goes to in_client.jsonl.
client() {
  .venv/bin/python tests/flight/client.py "$URI" query "$1" "$2" > "$WORK/client.json"
  grep -q '"ok": true' "$WORK/client.json"
  echo "{\"case\": \"$3\", \"seconds\": $(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$WORK/client.json")}" >> "$WORK/in_client.jsonl"
}
sql_csv() { "$BIN" sql "${TABLES[@]}" --format csv "$1" > "$2"; }
rm -f "$WORK/in_client.jsonl"
for round in $(seq "$ROUNDS"); do
  measure fetch_sql_csv sql_csv "$FETCH" "$WORK/fetch-sql.csv"
  measure fetch_flight_csv client "$FETCH" "$WORK/fetch-flight.csv" fetch_flight_in_client
  measure score_sql_csv sql_csv "$SCORE" "$WORK/score-sql.csv"
  measure score_flight_csv client "$SCORE" "$WORK/score-flight.csv" score_flight_in_client
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

.venv/bin/python - "$WORK/runs.jsonl" "$WORK/in_client.jsonl" "$ROWS" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for path in sys.argv[1:3] for line in open(path)]
rows = int(sys.argv[3])
def median(case):
    return statistics.median(run["seconds"] for run in runs if run["case"] == case)
for what in ("fetch", "score"):
    sql, flight, inside = median(f"{what}_sql_csv"), median(f"{what}_flight_csv"), median(f"{what}_flight_in_client")
    print(f"{what} {rows} rows: lakecat sql --format csv {sql:.2f} s ({rows / sql:,.0f} rows/s); "
          f"Flight SQL client process {flight:.2f} s ({rows / flight:,.0f} rows/s, {sql / flight:.2f} x), "
          f"of which connect+query+fetch+write {inside:.2f} s ({rows / inside:,.0f} rows/s, {sql / inside:.2f} x)")
PY
