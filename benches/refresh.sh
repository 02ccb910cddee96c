#!/usr/bin/env bash
# `lakecat refresh` side by side with plain `lakecat sql` scoring of the same rows, in one run:
#   1. first refresh (hash + score + MERGE) vs `lakecat sql --output-table` (score + write);
#   2. re-runs with nothing changed vs the first refresh: the same source version (the table's
#      last commit says that version was refreshed completely: nothing is read), and a new
#      source version holding the same rows (every row read and hashed, none rescored);
#   3. peak RSS of a first refresh over 10k rows vs 100k rows (the fashion set repeated), next to
#      that of only reading and hashing the same table, and of scoring it with `lakecat sql`.
# Data: the public fashion set next to the checkout (../shared/data/fashion), else the
# committed sample. Model: the demo's baseline bundle. Medians of ROUNDS alternating runs.
#   benches/refresh.sh [FASHION_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
FASHION="${1:-../shared/data/fashion}"
[[ -d "$FASHION" ]] || FASHION=data/sample/fashion
ROUNDS="${2:-3}"
WORK="${LAKECAT_BENCH_DIR:-/tmp/lakecat-bench-refresh}"
scripts/setup.sh
cargo build --quiet
BIN="${CARGO_TARGET_DIR:-target}/debug/lakecat"
rm -rf "$WORK" && mkdir -p "$WORK"

"$BIN" demo --dir "$WORK/demo" > /dev/null
MODEL="$WORK/demo/models/demo"
"$BIN" import "$FASHION/products.csv" --output "$WORK/fashion" --id id --title productDisplayName \
  --images "$FASHION/images" --labels masterCategory,subCategory,articleType > /dev/null
# Bigger tables: the fashion rows repeated under new ids, images included, one append (one data
# file) per 2,000 rows, so both tables have the same file layout and differ only in length.
repeat() {
  local name="$1" rows="$2" copy
  for copy in $(seq 1 $(( rows / 2000 ))); do
    "$BIN" sql --table p="$WORK/fashion" --output-table "$WORK/$name" --mode append \
      "SELECT concat(product_id, '-', '$copy') AS product_id, title, description, image
       FROM p ORDER BY product_id LIMIT 2000 OFFSET $(( copy * 2000 % 6000 ))" 2> /dev/null
  done
}
repeat rows10k 10000
repeat rows100k 100000

# measure NAME COMMAND…: one JSON line with wall seconds and peak RSS.
measure() {
  local name="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > /dev/null 2>&1
  read -r seconds kib < "$WORK/time"
  echo "{\"case\": \"$name\", \"seconds\": $seconds, \"peak_rss_mib\": $((kib / 1024))}"
}
SCORE_SQL="SELECT product_id, title, description, categorize(image, title, description) AS prediction FROM products"
for round in $(seq "$ROUNDS"); do
  rm -rf "$WORK/sql_out" "$WORK/predictions"
  measure sql_score_and_write "$BIN" sql --table products="$WORK/fashion" --model "$MODEL" --output-table "$WORK/sql_out" "$SCORE_SQL"
  measure refresh_first "$BIN" refresh --model "$MODEL" --source "$WORK/fashion" --target "$WORK/predictions"
  measure refresh_no_change "$BIN" refresh --model "$MODEL" --source "$WORK/fashion" --target "$WORK/predictions"
  "$BIN" sql --table p="$WORK/fashion" --output-table "$WORK/fashion" --mode overwrite "SELECT * FROM p" 2> /dev/null
  measure refresh_same_rows_new_version "$BIN" refresh --model "$MODEL" --source "$WORK/fashion" --target "$WORK/predictions"
done | tee "$WORK/runs.jsonl"
for rows in 10k 100k; do
  rm -rf "$WORK/predictions_$rows"
  measure "scan_$rows" "$BIN" sql --table p="$WORK/rows$rows" "SELECT count(content_hash(image, title, description)) FROM p"
  measure "sql_categorize_$rows" "$BIN" sql --table p="$WORK/rows$rows" --model "$MODEL" \
    "SELECT count(c.category_id) FROM (SELECT categorize(image, title, description) AS c FROM p)"
  measure "refresh_first_$rows" "$BIN" refresh --model "$MODEL" --source "$WORK/rows$rows" --target "$WORK/predictions_$rows"
done | tee -a "$WORK/runs.jsonl"

python3 - "$WORK/runs.jsonl" "$("$BIN" sql --table p="$WORK/fashion" --format csv "SELECT count(*) AS n FROM p" 2>/dev/null | tail -1)" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
rows = int(sys.argv[2])
def median(case, key="seconds"):
    return statistics.median(run[key] for run in runs if run["case"] == case)
sql, first, again = median("sql_score_and_write"), median("refresh_first"), median("refresh_no_change")
rewritten = median("refresh_same_rows_new_version")
print(f"{rows} rows, medians of {sum(r['case'] == 'refresh_first' for r in runs)} alternating runs")
print(f"sql score + write : {sql:6.2f} s  {rows / sql:7.0f} rows/s")
print(f"refresh, first run: {first:6.2f} s  {rows / first:7.0f} rows/s  overhead vs sql {first / sql - 1:+.1%}")
print(f"refresh, no change, same source version : {again:6.2f} s  = {again / first:.1%} of the first run")
print(f"refresh, no change, new version same rows: {rewritten:6.2f} s  = {rewritten / first:.1%} of the first run")
for case in ("scan", "sql_categorize", "refresh_first"):
    small, large = median(f"{case}_10k", "peak_rss_mib"), median(f"{case}_100k", "peak_rss_mib")
    seconds = median(f"{case}_100k")
    print(f"peak RSS, {case:13s}: 10k rows {small} MiB, 100k rows {large} MiB ({large / small:.2f}x; 100k in {seconds:.1f} s)")
PY
