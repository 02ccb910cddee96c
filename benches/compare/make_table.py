"""Repeats a products Delta table to at least --rows rows (ids suffixed with the copy number),
written as a new Delta table in files of ~2,000 rows, as an import would lay it out.

    python benches/compare/make_table.py --source T --rows N --output O
"""
import argparse

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    source = DeltaTable(args.source).to_pyarrow_table()
    copies = []
    copy = 0
    while sum(t.num_rows for t in copies) < args.rows:
        ids = pc.binary_join_element_wise(pc.cast(source["product_id"], pa.string()), pa.scalar(f"-{copy}"), "")
        copies.append(source.set_column(source.schema.get_field_index("product_id"), "product_id", ids))
        copy += 1
    table = pa.concat_tables(copies).slice(0, args.rows)
    for start in range(0, args.rows, 2000):
        write_deltalake(args.output, table.slice(start, 2000), mode="overwrite" if start == 0 else "append")


if __name__ == "__main__":
    main()
