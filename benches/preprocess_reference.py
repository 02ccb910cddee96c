"""The Python reference for image preprocessing, written as a competent engineer would:
Pillow decodes (with draft mode for large JPEGs) and resizes, numpy normalizes into one
preallocated NCHW batch. One process, one thread. Prints one JSON line like benches/preprocess.rs.

    python benches/preprocess_reference.py --images DIR [--size 224] [--rounds 3]
"""
import argparse, io, json, os, time

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess_into(data, size, out):
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (size, size))
    image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
    out[...] = ((array - MEAN) / STD).transpose(2, 0, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = sorted(os.listdir(args.images))
    images = [open(os.path.join(args.images, f), "rb").read() for f in files]
    batch = 64
    tensor = np.zeros((batch, 3, args.size, args.size), dtype=np.float32)
    best = float("inf")
    for _ in range(args.rounds):
        started = time.perf_counter()
        for start in range(0, len(images), batch):
            for i, data in enumerate(images[start:start + batch]):
                preprocess_into(data, args.size, tensor[i])
        best = min(best, time.perf_counter() - started)
    print(json.dumps({"impl": "pillow+numpy", "threads": 1, "images": len(images), "size": args.size,
                      "seconds": round(best, 4), "images_per_s": round(len(images) / best, 1)}))


if __name__ == "__main__":
    main()
