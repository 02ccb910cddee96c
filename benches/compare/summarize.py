"""Reads the JSON lines of benches/compare/run.sh: checks that the pipelines agree on the
predicted leaf, prints the Markdown table of medians (rows/s, CPU seconds, peak RSS) with the
ratios the targets name, and draws lakecat's rows/s against the batch size.

    python benches/compare/summarize.py WORK_DIR
"""
import json
import statistics
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from deltalake import DeltaTable

work = sys.argv[1]
runs = [json.loads(line) for line in open(f"{work}/runs.jsonl")]


def leaves(path):
    table = DeltaTable(path).to_pyarrow_table(columns=["product_id", "category_id"]).to_pydict()
    return dict(zip(table["product_id"], table["category_id"]))


print("| model | rows | pipeline | rows/s (median) | CPU s | peak RSS MiB | agreement with lakecat | vs lakecat |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
cases = sorted({(r["model"], r["rows"]) for r in runs if r["pipeline"] != "lakecat-batch"})
for model, rows in cases:
    group = [r for r in runs if (r["model"], r["rows"]) == (model, rows)]
    medians = {}
    for pipeline in ["lakecat", "python", "daft", "bare onnxruntime"]:
        mine = [r for r in group if r["pipeline"] == pipeline]
        if mine:
            medians[pipeline] = {k: statistics.median(r[k] for r in mine if k in r)
                                 for k in ["rows_per_second", "cpu_seconds", "peak_rss_mib"] if any(k in r for r in mine)}
    reference = leaves(f"{work}/out/{model}-{rows}-lakecat")
    for pipeline, m in medians.items():
        agreement = "—"
        if pipeline in ("python", "daft"):
            other = leaves(f"{work}/out/{model}-{rows}-{pipeline}")
            same = sum(other.get(k) == v for k, v in reference.items())
            agreement = f"{same / len(reference):.4f}"
        ratio = medians["lakecat"]["rows_per_second"] / m["rows_per_second"]
        # Bare ONNX Runtime is timed inside its process: it has no CPU time or peak RSS.
        usage = f"{m['cpu_seconds']:.1f} | {m['peak_rss_mib']:.0f}" if "cpu_seconds" in m else " | "
        print(f"| {model} | {rows:,} | {pipeline} | {m['rows_per_second']:,.1f} | {usage} | {agreement} | "
              f"{'—' if pipeline == 'lakecat' else f'lakecat {ratio:.2f}×'} |")

sweep = sorted((r["batch"], r["rows_per_second"]) for r in runs if r["pipeline"] == "lakecat-batch")
if sweep:
    by_batch = {}
    for batch, rate in sweep:
        by_batch.setdefault(batch, []).append(rate)
    batches = sorted(by_batch)
    rates = [statistics.median(by_batch[b]) for b in batches]
    model = next(r["model"] for r in runs if r["pipeline"] == "lakecat-batch")
    plt.figure(figsize=(6, 4))
    plt.plot(batches, rates, marker="o")
    plt.xscale("log", base=2)
    plt.xticks(batches, [str(b) for b in batches])
    plt.xlabel("rows per ONNX Runtime call (--batch-size)")
    plt.ylabel("rows/s (median)")
    plt.title(f"lakecat sql, {model} model")
    plt.grid(alpha=0.3)
    plt.tight_layout()
    plt.savefig(f"{work}/rows-per-second-vs-batch.png", dpi=120)
    print()
    print("| batch size | " + " | ".join(str(b) for b in batches) + " |")
    print("|---|" + "---:|" * len(batches))
    print("| lakecat rows/s | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
