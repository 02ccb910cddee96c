"""lakecat in datafusion-python: categorize product catalogs from a notebook.

    import datafusion, lakecat

    ctx = datafusion.SessionContext(lakecat.session_config())
    lakecat.register(ctx, models={"fashion": "s3://models/fashion"})
    lakecat.register_table(ctx, "products", "s3://lake/products")
    ctx.sql(\"\"\"
        SELECT product_id, c.category, c.confidence
        FROM (SELECT product_id, categorize(image, title, description) AS c FROM products)
    \"\"\").to_pandas()

`register` adds `categorize`, `category_path`, `category_level`, `content_hash` and the
`taxonomy()` table function to your own SessionContext; `register_table` adds a Delta table
read by lakecat (local, s3://, gs:// or az://). Both hand DataFusion's FFI the real functions
and scans: rows never pass through Python.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from lakecat import _lakecat

__version__ = _lakecat.__version__
__all__ = ["register", "register_table", "session_config", "__version__"]

ONNXRUNTIME_VERSION = "1.31.1"


def _require_datafusion():
    """Imports datafusion-python, refusing a major version whose FFI this build cannot speak."""
    wanted = _lakecat.datafusion_major_version()
    try:
        import datafusion
    except ImportError as error:
        raise ImportError(
            f"lakecat needs datafusion-python {wanted}: pip install 'datafusion>={wanted},<{wanted + 1}'"
        ) from error
    found = getattr(datafusion, "__version__", "unknown")
    if found.split(".")[0] != str(wanted):
        raise ImportError(
            f"lakecat {__version__} was built for datafusion {wanted}.x, but this environment has "
            f"datafusion {found}. DataFusion's FFI changes between major versions, so lakecat's "
            f"functions cannot be handed to this one: pip install 'datafusion>={wanted},<{wanted + 1}', "
            f"or build lakecat against datafusion {found.split('.')[0]}."
        )
    return datafusion


def _locate_onnxruntime():
    """Points lakecat at the onnxruntime (or onnxruntime-gpu) wheel's library, unless
    ORT_DYLIB_PATH already names one; without either lakecat says how to install it when a
    model is loaded."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return
    spec = importlib.util.find_spec("onnxruntime")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(glob.glob(os.path.join(folder, "capi", "libonnxruntime.so.*")))
        if found:
            os.environ["ORT_DYLIB_PATH"] = found[-1]
            return


datafusion = _require_datafusion()
_locate_onnxruntime()


def _setting_pairs(settings: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """`{"top_k": 5}` as `[("lakecat.top_k", "5")]`: names with or without the prefix,
    booleans as SQL writes them."""
    pairs = []
    for key, value in (settings or {}).items():
        name = key if key.startswith("lakecat.") else f"lakecat.{key}"
        if "." in key and not key.startswith("lakecat."):
            raise ValueError(
                f"{key!r} is not a lakecat setting; set DataFusion's own on your SessionConfig "
                f"(datafusion.SessionConfig().set({key!r}, ...))"
            )
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((name, str(value)))
    return pairs


def _model_pairs(models: Mapping[str, str] | str) -> list[tuple[str, str]]:
    if isinstance(models, str):
        # One bundle: named after its directory, as `lakecat sql --model PATH` names it.
        name = models.rstrip("/").rsplit("/", 1)[-1].split("@")[0]
        return [(name, models)]
    if not models:
        raise ValueError("models is empty: give at least one bundle, e.g. {'fashion': 'models/fashion'}")
    return [(str(name), str(location)) for name, location in models.items()]


def register(
    ctx: datafusion.SessionContext,
    models: Mapping[str, str] | str,
    *,
    settings: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, str] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
) -> _lakecat.Models:
    """Registers lakecat's functions on `ctx`, scoring with `models`.

    models: {name: bundle location}; the first is the default model, the others are picked
        with `categorize('name', image, title, description)`. A location is a bundle
        directory or a bundle in object storage (`s3://models/fashion` takes its latest
        version, `s3://models/fashion@3` pins one). A single location string is named after
        its directory.
    settings: lakecat settings (`top_k`, `confidence_threshold`, `allowed_locations`, … as
        `lakecat sql --setting` takes them), checked now. A session made with
        `session_config()` can change them later with `SET lakecat.top_k = 5`.
    storage_options: object store options for remote bundles and images (as `--storage-option`).
    device: "auto" (CUDA when available), "cpu" or "cuda".
    batch_size: rows per ONNX Runtime call (default 64).

    Every bundle is loaded and checked here, so a bad one fails now rather than in a query.
    Returns the loaded models (`.describe()` lists name, fingerprint and location).
    """
    loaded = _lakecat.Models(
        _model_pairs(models),
        _setting_pairs(settings),
        list((storage_options or {}).items()),
        device,
        batch_size,
    )
    for function in loaded.scalar_functions():
        ctx.register_udf(datafusion.udf(function))
    ctx.register_udtf(datafusion.udtf(loaded.taxonomy_function(), "taxonomy"))
    return loaded


def register_table(
    ctx: datafusion.SessionContext,
    name: str,
    location: str,
    *,
    version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> _lakecat.DeltaTable:
    """Registers the Delta table at `location` (a path, or s3://, gs://, az:// with
    `storage_options` or the environment's credentials) as `name`, at `version` (latest
    when None). Filters and projections are pushed into the Delta scan."""
    table = _lakecat.DeltaTable(location, version, list((storage_options or {}).items()))
    ctx.register_table(name, table)
    return table


def session_config(
    settings: Mapping[str, Any] | None = None,
    config: datafusion.SessionConfig | None = None,
) -> datafusion.SessionConfig:
    """A SessionConfig (`config`, or a new one) that knows lakecat's settings, so that
    `SET lakecat.top_k = 5` works in its sessions; `settings` are checked and set now.
    Values set here win over those given to `register`. It also turns off DataFusion 55's
    leaf-expression pushdown, which otherwise runs the model once per field selected from
    `categorize(...)`: use it for every session that scores."""
    config = config if config is not None else datafusion.SessionConfig()
    # As in lakecat's own sessions: DataFusion 55's leaf-expression pushdown turns
    # `SELECT c.a, c.b FROM (SELECT categorize(…) AS c …)` into one model run per field
    # (apache/datafusion#23655).
    config = config.set("datafusion.optimizer.enable_leaf_expression_pushdown", "false")
    return config.with_extension(_lakecat.Settings(_setting_pairs(settings)))
