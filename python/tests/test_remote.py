"""The `lakecat` package over a lakehouse on S3: the table and the bundle on moto (started by
tests/it/python.rs on 127.0.0.1, which gives its credentials in the environment and its endpoint
in LAKECAT_TEST_S3_ENDPOINT), the results equal to the same rows scored from local disk."""

import datafusion

import lakecat
from test_lakecat import assert_same, fixture, rows

SCORES = """
    SELECT product_id, c.category_id, c.category, c.path, c.confidence, c.top_k, c.model, c.error
    FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)
    ORDER BY product_id
"""


def test_table_and_bundle_on_s3_score_like_local_disk():
    # The endpoint only reaches lakecat as a storage option (the environment does not name it).
    storage = {"aws_endpoint": fixture("LAKECAT_TEST_S3_ENDPOINT"), "aws_allow_http": "true"}
    remote = datafusion.SessionContext()
    loaded = lakecat.register(remote, {"baseline": "s3://models/baseline"}, storage_options=storage, batch_size=16)
    assert loaded.describe()[0][2] == "s3://models/baseline/1", "the latest version of the bundle"
    table = lakecat.register_table(remote, "products", "s3://lake/products", storage_options=storage)
    assert table.location.startswith("s3://lake/products")

    local = datafusion.SessionContext()
    lakecat.register(local, models={"baseline": fixture("LAKECAT_TEST_BASELINE")}, batch_size=16)
    lakecat.register_table(local, "products", fixture("LAKECAT_TEST_PRODUCTS"))
    ours = rows(remote, SCORES)
    assert len(ours) == rows(local, "SELECT count(*) AS n FROM products")[0]["n"] > 0
    assert_same(ours, rows(local, SCORES))
    assert {row["error"] for row in ours} == {None}

