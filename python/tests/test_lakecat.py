"""The `lakecat` package in datafusion-python, as a notebook uses it, checked against `lakecat sql`.

tests/it/python.rs runs this suite with the Rust tests' fixture (a Delta lakehouse made from
the committed sample and two model bundles) named in the environment:
LAKECAT_BIN, LAKECAT_TEST_PRODUCTS, LAKECAT_TEST_BAD_IMAGES, LAKECAT_TEST_BASELINE and
LAKECAT_TEST_TEXT_ONLY.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import datafusion
import pandas
import pyarrow as pa
import pytest

import lakecat

SCORES = """
    SELECT product_id, c.category_id, c.category, c.path, c.confidence, c.top_k, c.model, c.error,
           t.category AS text_only
    FROM (SELECT product_id,
                 categorize(image, title, description) AS c,
                 categorize('text_only', image, title, description) AS t
          FROM products)
    ORDER BY product_id
"""


def fixture(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run this suite through `cargo test --test it python`")
    return value


@pytest.fixture(scope="module")
def paths():
    return {
        "bin": fixture("LAKECAT_BIN"),
        "products": fixture("LAKECAT_TEST_PRODUCTS"),
        "bad_images": fixture("LAKECAT_TEST_BAD_IMAGES"),
        "baseline": fixture("LAKECAT_TEST_BASELINE"),
        "text_only": fixture("LAKECAT_TEST_TEXT_ONLY"),
    }


@pytest.fixture(scope="module")
def ctx(paths):
    ctx = datafusion.SessionContext()
    lakecat.register(ctx, models={"baseline": paths["baseline"], "text_only": paths["text_only"]}, batch_size=16)
    lakecat.register_table(ctx, "products", paths["products"])
    lakecat.register_table(ctx, "bad_images", paths["bad_images"])
    return ctx


def lakecat_sql(paths, sql, *settings):
    """The rows `lakecat sql --format json` prints for `sql` over the same tables and models."""
    command = [
        paths["bin"], "sql", "--format", "json", "--batch-size", "16",
        "--table", f"products={paths['products']}", "--table", f"bad_images={paths['bad_images']}",
        "--model", f"baseline={paths['baseline']}", "--model", f"text_only={paths['text_only']}",
    ]
    for setting in settings:
        command += ["--setting", setting]
    result = subprocess.run(command + [sql], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = result.stdout.strip()
    if text.startswith("["):
        return [named(row) for row in json.loads(text)]
    return [named(json.loads(line)) for line in text.splitlines() if line.strip()]


def named(row):
    """A row with `c.error`'s column (DataFusion names it `c[error]`) called `error`."""
    return {key.rstrip("]").rsplit("[", 1)[-1]: value for key, value in row.items()}


def rows(ctx, sql):
    return [named(row) for row in ctx.sql(sql).to_arrow_table().to_pylist()]


def assert_same(ours, theirs, where="rows"):
    """Equal values, floats to 1e-5; JSON leaves out NULL fields, so a missing key is None."""
    if isinstance(ours, dict) or isinstance(theirs, dict):
        ours, theirs = ours or {}, theirs or {}
        for key in set(ours) | set(theirs):
            assert_same(ours.get(key), theirs.get(key), f"{where}.{key}")
    elif isinstance(ours, list) or isinstance(theirs, list):
        ours, theirs = ours or [], theirs or []
        assert len(ours) == len(theirs), f"{where}: {len(ours)} values vs {len(theirs)}"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(ours, float) or isinstance(theirs, float):
        assert ours is not None and theirs is not None, f"{where}: {ours!r} vs {theirs!r}"
        assert math.isclose(ours, theirs, abs_tol=1e-5), f"{where}: {ours} vs {theirs}"
    else:
        assert ours == theirs, f"{where}: {ours!r} vs {theirs!r}"


def test_scores_equal_lakecat_sql(ctx, paths):
    ours = rows(ctx, SCORES)
    assert len(ours) == len(lakecat_sql(paths, "SELECT product_id FROM products"))
    assert len(ours) > 0
    assert_same(ours, lakecat_sql(paths, SCORES))
    assert {row["error"] for row in ours} == {None}


def test_results_come_back_as_pyarrow_and_pandas(ctx):
    frame = ctx.sql("SELECT product_id, categorize(image, title, description) AS c FROM products LIMIT 5")
    table = frame.to_arrow_table()
    assert isinstance(table, pa.Table)
    assert pa.types.is_struct(table.schema.field("c").type)
    data = frame.to_pandas()
    assert isinstance(data, pandas.DataFrame)
    assert list(data.columns) == ["product_id", "c"]
    assert len(data) == 5
    assert data["c"][0]["category"]


def test_bad_rows_give_one_row_each_with_its_error(ctx, paths):
    sql = """
        SELECT product_id, c.category, c.confidence, c.error, c.error_stage
        FROM (SELECT product_id, categorize(image, title, description) AS c FROM bad_images)
        ORDER BY product_id
    """
    ours = rows(ctx, sql)
    assert len(ours) == rows(ctx, "SELECT count(*) AS n FROM bad_images")[0]["n"]
    assert_same(ours, lakecat_sql(paths, sql))
    by_id = {row["product_id"]: row for row in ours}
    assert by_id["truncated_jpeg"]["error"] and by_id["truncated_jpeg"]["category"] is None
    assert by_id["nothing"]["error"]
    assert by_id["good_jpeg"]["error"] is None and by_id["good_jpeg"]["category"]


def test_nulls_and_every_function(ctx, paths):
    sql = """
        SELECT category_path(c.category_id) AS path,
               category_level(c.category_id, 1) AS level_1,
               category_path(NULL) AS no_path,
               content_hash(NULL, title, NULL) AS hash,
               content_hash(NULL, NULL, NULL) AS no_hash,
               categorize('text_only', NULL, NULL, NULL) AS nothing
        FROM (SELECT title, categorize(image, title, description) AS c FROM products)
        ORDER BY hash, level_1, path
    """
    ours = rows(ctx, sql)
    assert_same(ours, lakecat_sql(paths, sql))
    assert all(row["no_path"] is None and row["hash"] for row in ours)
    assert all(row["nothing"]["error"] for row in ours)


def test_several_models_and_the_taxonomy(ctx, paths):
    loaded = lakecat.register(
        datafusion.SessionContext(), models={"baseline": paths["baseline"], "text_only": paths["text_only"]}
    )
    names = [name for name, _, _ in loaded.describe()]
    assert names == ["baseline", "text_only"], "the first model given is the default"
    fingerprints = {name: fingerprint for name, fingerprint, _ in loaded.describe()}
    models = rows(ctx, "SELECT DISTINCT c.model AS a, t.model AS b FROM (SELECT categorize(image, title, description) AS c, "
                       "categorize('text_only', image, title, description) AS t FROM products)")
    assert models == [{"a": fingerprints["baseline"], "b": fingerprints["text_only"]}]

    joined = """
        SELECT t.category_id, t.name, count(*) AS products
        FROM (SELECT categorize(image, title, description) AS c FROM products) p
        JOIN taxonomy() t ON t.category_id = p.c.category_id
        GROUP BY t.category_id, t.name ORDER BY t.category_id
    """
    assert_same(rows(ctx, joined), lakecat_sql(paths, joined))
    everything = "SELECT * FROM taxonomy('text_only') ORDER BY category_id"
    assert_same(rows(ctx, everything), lakecat_sql(paths, everything))

    with pytest.raises(Exception, match="baseline, text_only"):
        rows(ctx, "SELECT categorize('nope', image, title, description) FROM products")


def test_settings_at_registration_and_with_set(paths):
    sql = "SELECT c.top_k, c.confident_path FROM (SELECT product_id, categorize(image, title, description) AS c FROM products) ORDER BY product_id"
    ctx = datafusion.SessionContext()
    lakecat.register(ctx, paths["baseline"], settings={"top_k": 1, "lakecat.confidence_threshold": 0.99})
    lakecat.register_table(ctx, "products", paths["products"])
    registered = rows(ctx, sql)
    assert {len(row["top_k"]) for row in registered} == {1}
    assert_same(registered, lakecat_sql(paths, sql, "lakecat.top_k=1", "lakecat.confidence_threshold=0.99"))

    # A session made from session_config() takes SET, over what register was given.
    ctx = datafusion.SessionContext(lakecat.session_config({"top_k": 2}))
    lakecat.register(ctx, paths["baseline"], settings={"top_k": 1})
    lakecat.register_table(ctx, "products", paths["products"])
    assert {len(row["top_k"]) for row in rows(ctx, sql)} == {2}
    ctx.sql("SET lakecat.top_k = 4").collect()
    assert {len(row["top_k"]) for row in rows(ctx, sql)} == {4}
    ctx.sql("SET lakecat.top_k = 5000").collect()
    with pytest.raises(Exception, match="lakecat.top_k must be between 0 and 1000"):
        rows(ctx, sql)

    with pytest.raises(Exception, match="lakecat.top_k must be between 0 and 1000"):
        lakecat.register(datafusion.SessionContext(), paths["baseline"], settings={"top_k": 5000})
    with pytest.raises(ValueError, match="not a lakecat setting"):
        lakecat.register(datafusion.SessionContext(), paths["baseline"], settings={"datafusion.execution.batch_size": 8})
    with pytest.raises(ValueError, match="confidence_threshold"):
        lakecat.session_config({"confidence_threshold": 2})


def test_tables_at_a_version_and_bad_locations(ctx, paths):
    table = lakecat.register_table(ctx, "products_v0", paths["products"], version=0)
    assert table.version == 0
    assert rows(ctx, "SELECT count(*) AS n FROM products_v0") == rows(ctx, "SELECT count(*) AS n FROM products")
    filtered = rows(ctx, "SELECT product_id FROM products WHERE product_id = (SELECT min(product_id) FROM products)")
    assert len(filtered) == 1
    with pytest.raises(Exception, match="Delta"):
        lakecat.register_table(ctx, "nothing", os.path.join(paths["products"], "no-such-table"))
    with pytest.raises(Exception, match="bundle|manifest"):
        lakecat.register(datafusion.SessionContext(), paths["products"])


def test_a_datafusion_of_another_major_version_is_refused(tmp_path):
    fake = tmp_path / "datafusion"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "54.1.0"\n')
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        import lakecat
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "built for datafusion 55.x" in result.stderr and "datafusion 54.1.0" in result.stderr, result.stderr
    assert "pip install 'datafusion>=55,<56'" in result.stderr
