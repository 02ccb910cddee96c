"""The model-bound limit: the same ONNX model in onnxruntime on tensors made in advance (no
reading, decoding, vectorising or writing). Prints rows/s as one JSON line.

    python benches/compare/bare_ort.py --bundle B --rows N [--batch 64]
"""
import argparse
import json
import time

import numpy as np

from bundle import Bundle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    bundle = Bundle(args.bundle)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch, 3, bundle.size[1], bundle.size[0]), dtype=np.float32) if bundle.image else None
    texts = (rng.random((args.batch, bundle.vectorizer.dim), dtype=np.float32) < 0.001).astype(np.float32) \
        if bundle.text else None
    bundle.score(images, texts)  # warm-up
    started = time.perf_counter()
    for start in range(0, args.rows, args.batch):
        n = min(args.batch, args.rows - start)
        bundle.score(None if images is None else images[:n], None if texts is None else texts[:n])
    seconds = time.perf_counter() - started
    print(json.dumps({"pipeline": "bare onnxruntime", "rows": args.rows, "batch": args.batch,
                      "seconds": round(seconds, 3), "rows_per_second": round(args.rows / seconds, 1)}))


if __name__ == "__main__":
    main()
