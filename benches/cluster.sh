#!/usr/bin/env bash
# Scoring the fashion set on a local Ballista cluster (`lakecat cluster`, 1 and 2 executors on
# this machine) vs local `lakecat sql`, side by side in one run. Every case runs the same query
# into CSV in a fresh client process; a `SELECT count(*)` run of each gives the fixed cost of a
# query (start, model load, table open, planning; on the cluster also scheduling), so the
# steady rows/s (rows / (run - fixed)) and the cluster's overhead per query can be read off.
# CPU seconds per row count every process of a case (client, scheduler, executors), read from
# /proc. Executors get this machine's cores between them: one with 2 task slots, or two with 1.
# Data: the public fashion set next to the checkout (../shared/data/fashion), else the committed
# sample. Model: the light model of benches/compare (tiny CNN + text), trained here.
#   benches/cluster.sh [FASHION_DIR] [ROUNDS]     (REUSE=1: keep the table and model of the last run)
set -euo pipefail
cd "$(dirname "$0")/.."
FASHION="${1:-../shared/data/fashion}"
[[ -d "$FASHION" ]] || FASHION=data/sample/fashion
ROUNDS="${2:-3}"
WORK="${LAKECAT_BENCH_DIR:-/tmp/lakecat-bench-cluster}"
scripts/setup.sh
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
SCORE="SELECT product_id, c.category AS category, c.confidence AS confidence FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)"
FIXED="SELECT count(*) AS n FROM products"
TICKS=$(getconf CLK_TCK)

PIDS=()
stop_cluster() { for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done; wait 2> /dev/null || true; PIDS=(); }
trap stop_cluster EXIT
port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# start_cluster EXECUTORS SLOTS: a scheduler and executors in the background; sets URL.
start_cluster() {
  local executors="$1" slots="$2" scheduler_port
  scheduler_port=$(port)
  "$BIN" cluster scheduler --address "127.0.0.1:$scheduler_port" 2> "$WORK/scheduler.log" & PIDS+=($!)
  URL="df://127.0.0.1:$scheduler_port"
  for _ in $(seq 100); do grep -q "listening on" "$WORK/scheduler.log" && break; sleep 0.1; done
  for i in $(seq "$executors"); do
    "$BIN" cluster executor --scheduler "$URL" --port "$(port)" --grpc-port "$(port)" --task-slots "$slots" \
      --device cpu 2> "$WORK/executor-$i.log" & PIDS+=($!)
  done
  sleep 3
}
# CPU seconds used so far by the cluster's processes.
cluster_cpu() {
  local total=0 pid
  for pid in "${PIDS[@]}"; do
    total=$(awk -v t="$total" -v k="$TICKS" '{ printf "%.3f", t + ($14 + $15) / k }' "/proc/$pid/stat")
  done
  echo "$total"
}
# measure NAME OUT SQL [FLAGS…]: one JSON line with wall and CPU seconds (client + cluster).
measure() {
  local name="$1" out="$2" sql="$3" start end before after client TIMEFORMAT="%U %S"; shift 3
  before=$(cluster_cpu)
  start=$(date +%s.%N)
  { time "$BIN" sql --table "products=$WORK/fashion" --model "$MODEL" --format csv "$@" "$sql" > "$out" 2> "$WORK/stderr"; } \
    2> "$WORK/time" || { cat "$WORK/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  after=$(cluster_cpu)
  client=$(awk '{ print $1 + $2 }' "$WORK/time")
  echo "{\"case\": \"$name\", \"seconds\": $(awk "BEGIN { printf \"%.3f\", $end - $start }"), \"cpu\": $(awk "BEGIN { printf \"%.3f\", $client + $after - $before }")}"
}
# rounds CASE [FLAGS…]: ROUNDS runs of the fixed and the scoring query.
rounds() {
  local case="$1" round; shift
  for round in $(seq "$ROUNDS"); do
    measure "fixed_$case" "$WORK/fixed-$case.csv" "$FIXED" "$@"
    measure "score_$case" "$WORK/score-$case.csv" "$SCORE" "$@"
  done
}
{
  rounds local
  start_cluster 1 2
  rounds 1 --cluster "$URL"
  stop_cluster
  start_cluster 2 1
  rounds 2 --cluster "$URL"
  stop_cluster
} | tee "$WORK/runs.jsonl"

.venv/bin/python - "$WORK" "$ROWS" <<'PY'
import json, statistics, sys
import pyarrow.compute as pc
import pyarrow.csv as csv
work, rows = sys.argv[1], int(sys.argv[2])
local = csv.read_csv(f"{work}/score-local.csv").sort_by("product_id")
for executors in (1, 2):
    other = csv.read_csv(f"{work}/score-{executors}.csv").sort_by("product_id")
    assert other.num_rows == local.num_rows == rows, (other.num_rows, local.num_rows, rows)
    assert other.column("category").equals(local.column("category"))
    assert pc.max(pc.abs(pc.subtract(other.column("confidence"), local.column("confidence")))).as_py() < 1e-5
runs = [json.loads(line) for line in open(f"{work}/runs.jsonl")]
def median(case, key="seconds"):
    return statistics.median(run[key] for run in runs if run["case"] == case)
base = median("score_local")
print(f"{rows} rows, medians of {len([r for r in runs if r['case'] == 'score_local'])} runs; same predictions on every side")
print("| case | run (s) | rows/s | vs local | fixed cost per query (s) | steady rows/s | CPU ms per row |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name, case in (("local `lakecat sql`", "local"), ("cluster, 1 executor x 2 slots", "1"), ("cluster, 2 executors x 1 slot", "2")):
    run, fixed = median(f"score_{case}"), median(f"fixed_{case}")
    cpu = median(f"score_{case}", "cpu")
    print(f"| {name} | {run:.2f} | {rows / run:,.0f} | {base / run:.2f} x | {fixed:.2f} | {rows / (run - fixed):,.0f} | {1000 * cpu / rows:.2f} |")
PY
