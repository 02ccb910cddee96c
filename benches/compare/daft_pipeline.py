"""The Daft pipeline: Daft reads the Delta table, decodes and resizes the images with its own
image functions (Rust), and a batch UDF (a class, so each worker loads the model once)
normalises, vectorises the text and calls onnxruntime; Daft writes the Delta table.

    python benches/compare/daft_pipeline.py --table T --bundle B --output O [--batch 64]
"""
import daft
import numpy as np
from daft import DataType, col

from bundle import Bundle, pipeline_args


def main():
    args = pipeline_args()
    probe = Bundle(args.bundle)
    depth = probe.depth
    result = DataType.struct({"category_id": DataType.int64(), "confidence": DataType.float64(),
                              **{f"level_{i + 1}": DataType.string() for i in range(depth)}})

    @daft.cls
    class Categorize:
        def __init__(self, path: str):
            self.bundle = Bundle(path)

        @daft.method.batch(return_dtype=result, batch_size=args.batch)
        def __call__(self, pixels, titles, descriptions):
            bundle = self.bundle
            images = None
            if bundle.image:
                arrays = [None if p is None else bundle.normalize(np.asarray(p)) for p in pixels.to_pylist()]
                images = bundle.image_batch(arrays)
            texts = bundle.text_batch(titles.to_pylist(), descriptions.to_pylist()) if bundle.text else None
            leaves, confidences = bundle.score(images, texts)
            columns = bundle.output_columns([None] * len(leaves), leaves, confidences)
            del columns["product_id"]
            return [dict(zip(columns, values)) for values in zip(*columns.values())]

    df = daft.read_deltalake(args.table)
    if probe.image:
        width, height = probe.size
        pixels = col("image").decode_image(on_error="null", mode="RGB").resize(width, height)
    else:
        pixels = daft.lit(None)
    categorize = Categorize(args.bundle)
    df = df.select(col("product_id"), categorize(pixels, col("title"), col("description")).alias("c"))
    df = df.select(col("product_id"), *[col("c").get(name).alias(name)
                                        for name in ["category_id", "confidence"] + [f"level_{i + 1}" for i in range(depth)]])
    df.write_deltalake(args.output, mode="overwrite")


if __name__ == "__main__":
    main()
