#!/usr/bin/env bash
# The lakehouse on object storage vs on local disk, side by side in one run, on an S3-compatible
# server on 127.0.0.1 (moto, from scripts/setup.sh --test):
#   1. scoring the fashion table with `lakecat sql` from S3 vs from local disk (rows/s ratio);
#   2. a no-change refresh against S3: how many requests for data files (.parquet) it makes
#      (from moto's request log), and its time;
#   3. the cost of checking images named by URI (one HEAD each) in a no-change refresh of a
#      table whose images are on S3, vs the same table with embedded images.
# Data: the public fashion set next to the checkout (../shared/data/fashion), else the committed
# sample. Model: the light model of benches/compare (tiny CNN + text), trained here. Medians of
# ROUNDS alternating runs.
#   benches/remote.sh [FASHION_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
FASHION="${1:-../shared/data/fashion}"
[[ -d "$FASHION" ]] || FASHION=data/sample/fashion
ROUNDS="${2:-3}"
WORK="${LAKECAT_BENCH_DIR:-/tmp/lakecat-bench-remote}"
scripts/setup.sh --test
cargo build --quiet
BIN="${CARGO_TARGET_DIR:-target}/debug/lakecat"
rm -rf "$WORK" && mkdir -p "$WORK"

PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/python -m moto.server -H 127.0.0.1 -p "$PORT" 2> "$WORK/moto.log" &
MOTO=$!
trap 'kill $MOTO 2> /dev/null' EXIT
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=moto-key-id AWS_SECRET_ACCESS_KEY=moto-secret-key AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
.venv/bin/python - "$PORT" "$FASHION" <<'EOF'
import pathlib, sys
import boto3  # comes with moto[server]
port, fashion = sys.argv[1], pathlib.Path(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="moto-key-id", aws_secret_access_key="moto-secret-key")
s3.create_bucket(Bucket="lake")
for image in sorted((fashion / "images").glob("*.jpg")):
    s3.put_object(Bucket="lake", Key=f"images/{image.name}", Body=image.read_bytes())
EOF

IMPORT=(--id id --title productDisplayName --labels masterCategory,subCategory,articleType)
"$BIN" import "$FASHION/products.csv" --output "$WORK/fashion" --images "$FASHION/images" "${IMPORT[@]}" > /dev/null
# The light model of benches/compare (tiny CNN + text): scoring is fast, so I/O shows.
MODEL="$WORK/light"
"$BIN" train --table "$WORK/fashion" --output "$MODEL" --backbone tiny --epochs 4 --hierarchy-epochs 1 > /dev/null 2>&1
"$BIN" import "$FASHION/products.csv" --output s3://lake/fashion --images "$FASHION/images" "${IMPORT[@]}" > /dev/null
"$BIN" import "$FASHION/products.csv" --output s3://lake/by_uri --images s3://lake/images --reference-images "${IMPORT[@]}" > /dev/null
ROWS=$(tail -n +2 "$FASHION/products.csv" | wc -l)

# measure NAME COMMAND…: one JSON line with wall seconds, rows/s and peak RSS.
measure() {
  local name="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > /dev/null 2> "$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  read -r seconds kib < "$WORK/time"
  echo "{\"case\": \"$name\", \"seconds\": $seconds, \"rows_per_second\": $(echo "$ROWS / $seconds" | bc), \"peak_rss_mib\": $((kib / 1024))}"
}
# data_file_gets COMMAND…: runs it and prints how many GETs of .parquet files moto answered meanwhile.
data_file_gets() {
  local before after
  before=$(grep -c 'GET /lake/[^ ]*\.parquet' "$WORK/moto.log" || true)
  "$@" > /dev/null 2> "$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
  after=$(grep -c 'GET /lake/[^ ]*\.parquet' "$WORK/moto.log" || true)
  echo $(( after - before ))
}
SCORE="SELECT count(c.category_id) FROM (SELECT categorize(image, title, description) AS c FROM p)"
"$BIN" refresh --model "$MODEL" --source s3://lake/fashion --target s3://lake/predictions > /dev/null 2>&1
"$BIN" refresh --model "$MODEL" --source "$WORK/fashion" --target "$WORK/predictions" > /dev/null 2>&1
"$BIN" refresh --model "$MODEL" --source s3://lake/by_uri --target s3://lake/by_uri_predictions > /dev/null 2>&1
for round in $(seq "$ROUNDS"); do
  measure sql_local "$BIN" sql --table p="$WORK/fashion" --model "$MODEL" "$SCORE"
  measure sql_s3 "$BIN" sql --table p=s3://lake/fashion --model "$MODEL" "$SCORE"
  measure refresh_no_change_local "$BIN" refresh --model "$MODEL" --source "$WORK/fashion" --target "$WORK/predictions"
  measure refresh_no_change_s3 "$BIN" refresh --model "$MODEL" --source s3://lake/fashion --target s3://lake/predictions
  measure refresh_no_change_s3_images_by_uri "$BIN" refresh --model "$MODEL" --source s3://lake/by_uri --target s3://lake/by_uri_predictions
done | tee "$WORK/runs.jsonl"
GETS=$(data_file_gets "$BIN" refresh --model "$MODEL" --source s3://lake/fashion --target s3://lake/predictions)
echo "{\"case\": \"refresh_no_change_s3_data_file_gets\", \"gets\": $GETS}" | tee -a "$WORK/runs.jsonl"

.venv/bin/python - "$WORK/runs.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def median(case, key="seconds"):
    return statistics.median(run[key] for run in runs if run["case"] == case)
local, s3 = median("sql_local"), median("sql_s3")
print(f"sql scoring: local {local:.2f} s, S3 {s3:.2f} s: S3 rows/s = {local / s3:.2f} x local")
print(f"no-change refresh: local {median('refresh_no_change_local'):.2f} s, S3 {median('refresh_no_change_s3'):.2f} s, "
      f"S3 with images by URI (one HEAD per image) {median('refresh_no_change_s3_images_by_uri'):.2f} s")
print(f"data-file GETs of a no-change refresh against S3: {median('refresh_no_change_s3_data_file_gets', 'gets'):.0f}")
EOF
