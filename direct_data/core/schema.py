"""The shard schemas of every stage, in one place.

Each schema is declared once as `datasets.Features`, so the Parquet files carry the ``huggingface``
metadata that lets ``datasets.load_dataset("parquet", data_files=...)`` load them typed, plus our own
``direct_data.schema_version`` and ``direct_data.table`` keys.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
from datasets import Features, List, Value

SCHEMA_VERSION = 1

#: A row that a stage could not use, with the reason. Every stage writes these; nothing is dropped silently.
REJECTS = Features(
    {
        "stage": Value("string"),
        "source": Value("string"),  # input file (or upstream prompt id) the row came from
        "row": Value("int64"),  # 0-based row/line index inside `source`, -1 where it does not apply
        "reason": Value("string"),  # short stable code, e.g. "empty", "too_long", "not_utf8"
        "detail": Value("string"),  # human-readable detail
        "raw": Value("string"),  # the offending value, truncated, for inspection
    }
)

#: One distinct prompt with its semantic partition and macro negatives (`direct-data partition`).
PARTITIONS = Features(
    {
        "prompt_id": Value("string"),  # sha256 of the normalised text, 16 hex chars
        "prompt": Value("string"),  # normalised text (NFC, whitespace folded)
        "source": Value("string"),  # file of the first occurrence
        "row": Value("int64"),  # row of the first occurrence
        "n_duplicates": Value("int32"),  # exact duplicates merged into this row
        "meta": Value("string"),  # the input row's other columns, as sorted-key JSON
        "partition_id": Value("int32"),
        "centroid_cos": Value("float32"),  # cosine to its own centroid
        "second_partition": Value("int32"),  # nearest other partition (-1 if k == 1)
        "margin": Value("float32"),  # centroid_cos - cosine to the second partition
        "macro_negatives": List(Value("string")),  # prompt ids drawn from distant partitions
    }
)

TABLES: dict[str, Features] = {"rejects": REJECTS, "partitions": PARTITIONS}


#: the stage modules that register tables of their own (`register`), imported on the first lookup
#: of a table not registered yet: reading a stage's empty table (no shard to take a schema from)
#: must not depend on whether the reader imported that stage
_REGISTERING_STAGES = ("perturb", "validate", "encode")


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of `table`, carrying the `datasets` features and our schema version."""
    if table not in TABLES:
        import importlib

        for name in _REGISTERING_STAGES:
            importlib.import_module(f"direct_data.stages.{name}")
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r} (known: {', '.join(sorted(TABLES))})")
    features = TABLES[table]
    schema = features.arrow_schema
    meta = dict(schema.metadata or {})
    meta[b"direct_data.schema_version"] = str(SCHEMA_VERSION).encode()
    meta[b"direct_data.table"] = table.encode()
    return schema.with_metadata(meta)


def register(table: str, features: Features) -> None:
    """Register a later stage's table (each stage module declares its own features through here)."""
    if table in TABLES and TABLES[table] != features:
        raise ValueError(f"table {table!r} already registered with different features")
    TABLES[table] = features


def finite_json(value: Any) -> Any:
    """`value` with every non-finite float (NaN, inf: a Parquet or JSON cell; JSON has no such number)
    replaced by None, in nested lists and objects too; other values unchanged."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # a numpy scalar or array from a reader
        return finite_json(value.tolist())
    return value


def to_meta_json(row: dict) -> str:
    """Sorted-key, strict JSON of a row's extra columns: a non-finite number (NaN, inf) becomes null,
    the row is kept (it is a meta value, not the prompt); other values that JSON cannot hold become
    strings. A lone surrogate ("\\ud800" in the input JSON) cannot be written as UTF-8: that row's
    JSON is ASCII, escaped."""
    row = finite_json(row)
    text = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(row, sort_keys=True, default=str, allow_nan=False)
    return text
