"""The Python reference pipeline: Delta table → categories → Delta table, batched, numpy,
one onnxruntime session (ONNX Runtime parallelises each call over the cores).

    python benches/compare/reference.py --table T --bundle B --output O [--batch 64]
"""
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from bundle import Bundle, pipeline_args


def main():
    args = pipeline_args()
    bundle = Bundle(args.bundle)
    dataset = DeltaTable(args.table).to_pyarrow_dataset()
    columns = ["product_id", "image", "title", "description"]
    writes = []
    for batch in dataset.to_batches(columns=columns, batch_size=args.batch):
        rows = batch.to_pydict()
        images = bundle.image_batch([bundle.image_array(b) for b in rows["image"]]) if bundle.image else None
        texts = bundle.text_batch(rows["title"], rows["description"]) if bundle.text else None
        leaves, confidences = bundle.score(images, texts)
        writes.append(pa.table(bundle.output_columns(rows["product_id"], leaves, confidences)))
    write_deltalake(args.output, pa.concat_tables(writes), mode="overwrite")


if __name__ == "__main__":
    main()
