"""Read prompts from files: `.jsonl`, `.json`, `.csv`, `.parquet`, `.txt` and `datasets` folders;
the text formats also compressed (`.gz`, `.bz2`, `.xz`: `prompts.jsonl.gz`).

Every input row ends as exactly one of: a kept prompt, a merged exact duplicate of a kept prompt,
or a reject with a reason. A file that cannot be parsed at all raises `InputError`, a one-line
message naming the file and the line.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from direct_data.core.errors import InputError  # noqa: F401  (re-raised by the readers)

DEFAULT_TEXT_COLUMNS = ("prompt", "caption", "text")
DEFAULT_MAX_CHARS = 2000
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
#: compressions the text formats may carry (`prompts.jsonl.gz`), by their suffix
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)  # a corrupt or truncated compressed file


def _open(path: Path):
    """The file's bytes, decompressed when its name ends in a `COMPRESSIONS` suffix."""
    opener = COMPRESSIONS.get(path.suffix.lower())
    return opener(path, "rb") if opener else open(path, "rb")


def _read_bytes(path: Path) -> bytes:
    try:
        with _open(path) as f:
            return f.read()
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot read ({e})") from None


def normalize_text(text: str) -> str:
    """Unicode NFC, every run of whitespace folded to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def prompt_id(normalized: str) -> str:
    """Stable id of a normalised prompt: the first 16 hex chars of its sha256."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:16]


@dataclass
class RawRow:
    source: str
    row: int
    record: dict | None  # None when the row could not be decoded
    error: str | None = None  # reason code when record is None
    detail: str = ""
    raw: str = ""


@dataclass
class Prompt:
    prompt_id: str
    prompt: str
    source: str
    row: int
    meta: dict
    n_duplicates: int = 0


@dataclass
class Reject:
    source: str
    row: int
    reason: str
    detail: str
    raw: str

    def to_row(self, stage: str) -> dict:
        return {"stage": stage, "source": self.source, "row": self.row, "reason": self.reason, "detail": self.detail, "raw": self.raw[:500]}


@dataclass
class ReadResult:
    prompts: list[Prompt] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    read: int = 0
    merged: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    columns: set[str] = field(default_factory=set)  # column names seen in the input rows

    @property
    def kept(self) -> int:
        return len(self.prompts)

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rejects:
            out[r.reason] = out.get(r.reason, 0) + 1
        return dict(sorted(out.items()))

    def require_prompts(self, text_column: str | None) -> None:
        """An `InputError` saying why, when no usable prompt was read (nothing to do downstream)."""
        if self.kept:
            return
        if self.read == 0:
            raise InputError("the input has no rows")
        reasons = self.reasons()
        msg = f"no usable prompt in the input: {self.read} row{'s' if self.read > 1 else ''} read, all rejected (" + \
            ", ".join(f"{k}={v}" for k, v in reasons.items()) + ")"
        if "missing_column" in reasons:
            want = f"column {text_column!r}" if text_column else "prompt, caption or text column"
            cols = ", ".join(sorted(self.columns)[:20]) or "none"
            msg += f"; no row has a {want} (the input's columns: {cols}; pick one with --text-column)"
        raise InputError(msg)

    def accounted(self) -> bool:
        return self.read == self.kept + self.merged + len(self.rejects)


class _RepeatedKey(ValueError):
    """A JSON object names one key twice: `json` would keep the last value and drop the first."""


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    d = dict(pairs)
    if len(d) < len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _RepeatedKey(f"the key {key[:80]!r} appears twice in one object")
    return d


def _loads(text: str):
    """`json.loads` that refuses an object naming a key twice (`_RepeatedKey`) instead of keeping
    the last value; numbers past Python's 4,300-digit limit raise `ValueError` as `json` does."""
    return json.loads(text, object_pairs_hook=_pairs)


def _decode_lines(path: Path) -> Iterator[tuple[int, str | None, bytes]]:
    try:
        with _open(path) as f:
            for i, line in enumerate(f):
                if i == 0 and line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is not part of the first row
                    line = line[3:]
                try:
                    yield i, line.decode("utf-8"), line
                except UnicodeDecodeError:
                    yield i, None, line
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot read ({e})") from None


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    parsed_any, first_error = False, None
    rows = []
    for i, text, raw in _decode_lines(path):
        if text is None:
            rows.append(RawRow(str(path), i, None, "not_utf8", "line is not valid UTF-8", raw.decode("utf-8", "replace")))
            continue
        if not text.strip():
            continue  # blank lines are not rows
        try:
            rec = _loads(text)
        except json.JSONDecodeError as e:
            first_error = first_error or (i, e)
            rows.append(RawRow(str(path), i, None, "invalid_json", f"JSON error: {e.msg}", text))
            continue
        except RecursionError:  # "[[[[...": Python's parser gives up past ~1,000 levels
            rows.append(RawRow(str(path), i, None, "invalid_json", "JSON nested too deeply", text[:500]))
            continue
        except ValueError as e:  # a key named twice, or an integer past Python's 4,300-digit limit
            rows.append(RawRow(str(path), i, None, "invalid_json", f"JSON error: {str(e)[:200]}", text[:500]))
            continue
        parsed_any = True
        if not isinstance(rec, dict):
            rows.append(RawRow(str(path), i, None, "not_an_object", f"expected a JSON object, got {type(rec).__name__}", text))
            continue
        rows.append(RawRow(str(path), i, rec))
    if not parsed_any and first_error is not None:
        i, e = first_error
        raise InputError(f"{path}:{i + 1}: cannot parse as JSON Lines ({e.msg})")
    yield from rows


def _read_json(path: Path) -> Iterator[RawRow]:
    try:
        data = _loads(_read_bytes(path).decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: cannot parse as JSON ({e.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: cannot parse as JSON (nested too deeply)") from None
    except ValueError as e:  # a key named twice, or an integer past Python's 4,300-digit limit
        raise InputError(f"{path}: cannot parse as JSON ({str(e)[:200]})") from None
    if isinstance(data, dict):
        # {"data": [...]} / {"prompts": [...]} / a columnar dict of equal-length lists
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(x, dict) for x in next(iter(lists.values()))):
            data = next(iter(lists.values()))
        elif lists and len(lists) == len(data) and len({len(v) for v in lists.values()}) == 1:
            keys = list(lists)
            data = [dict(zip(keys, vals)) for vals in zip(*lists.values())]
        else:
            raise InputError(f"{path}:1: expected a list of objects (or a columnar object of lists)")
    if not isinstance(data, list):
        raise InputError(f"{path}:1: expected a list of objects, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if isinstance(rec, dict):
            yield RawRow(str(path), i, rec)
        elif isinstance(rec, str):
            yield RawRow(str(path), i, {"prompt": rec})
        else:
            yield RawRow(str(path), i, None, "not_an_object", f"expected an object, got {type(rec).__name__}", json.dumps(rec, default=str))


def _read_csv(path: Path) -> Iterator[RawRow]:
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # decode line by line so only the bad rows are rejected
        text = raw.decode("utf-8", "surrogateescape")
    # a 200 kB field is one too_long row, not a file the csv module refuses (its default limit is 128 kB)
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise InputError(f"{path}:1: cannot parse CSV header ({e})") from None
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:  # a dict per row would keep only the last of them
        raise InputError(f"{path}:1: the CSV header names {', '.join(map(repr, dup[:3]))} more than once; give each column its own name")
    rows = []
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise InputError(f"{path}:{reader.line_num}: cannot parse CSV ({e})") from None
        i = reader.line_num - 1  # line of the record's end, 0-based
        if not values:
            continue
        if any(_has_surrogates(v) for v in values):
            rows.append(RawRow(str(path), i, None, "not_utf8", "row is not valid UTF-8", ",".join(v.encode("utf-8", "replace").decode() for v in values)))
            continue
        if len(values) != len(header):
            rows.append(RawRow(str(path), i, None, "bad_columns", f"{len(values)} fields, header has {len(header)}", ",".join(values)))
            continue
        rows.append(RawRow(str(path), i, dict(zip(header, values))))
    yield from rows


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _read_txt(path: Path) -> Iterator[RawRow]:
    """One prompt per line; a line ends at "\\n", "\\r\\n" or a lone "\\r" (old Mac files), as the
    CSV reader reads them, so CR-only lines are not fused into one prompt."""
    raw = _read_bytes(path)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = re.split(rb"\r\n|\r|\n", raw)
    if lines and not lines[-1]:
        lines.pop()
    for i, line in enumerate(lines):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield RawRow(str(path), i, None, "not_utf8", "line is not valid UTF-8", line.decode("utf-8", "replace"))
            continue
        if text.strip():
            yield RawRow(str(path), i, {"prompt": text})


def _read_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: cannot read as Parquet ({str(e).splitlines()[0]})") from None
    names = pf.schema_arrow.names
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # a dict per row would keep only the last of them
        raise InputError(f"{path}: the Parquet schema names {', '.join(map(repr, dup[:3]))} more than once; give each column its own name")
    i = 0
    for batch in pf.iter_batches(batch_size=8192):
        for rec in batch.to_pylist():
            yield RawRow(str(path), i, rec)
            i += 1


def _saved_without_shards(folder: Path) -> bool:
    """A `Dataset` folder whose state.json lists no Arrow files: what save_to_disk writes for zero rows."""
    try:
        files = json.loads((folder / "state.json").read_text(encoding="utf-8")).get("_data_files")
    except (OSError, ValueError, AttributeError):
        return False  # load_from_disk reports it
    return files == []


def _load_split(folder: Path, shown: Path):
    """One saved `Dataset`, or None for one saved with no rows (which `datasets` itself cannot load)."""
    from datasets import Dataset

    if _saved_without_shards(folder):
        return None
    try:
        return Dataset.load_from_disk(str(folder))
    except Exception as e:
        raise InputError(f"{shown}: not a `datasets` folder saved with save_to_disk ({str(e).splitlines()[0]})") from None


def _read_dataset_dir(path: Path) -> Iterator[RawRow]:
    if (path / "dataset_dict.json").exists():
        try:
            names = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
            ok = isinstance(names, list) and all(isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")
                                                 for n in names)
        except (OSError, ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            raise InputError(f"{path}: dataset_dict.json does not list its splits as folder names; save it again with "
                             f"DatasetDict.save_to_disk")
        splits = [(name, _load_split(path / name, path)) for name in sorted(set(names))]
    else:
        splits = [("", _load_split(path, path))]
    for name, split in splits:
        src = f"{path}[{name}]" if name else str(path)
        for i, rec in enumerate(split if split is not None else ()):
            yield RawRow(src, i, rec)


def iter_raw_rows(path: str | Path) -> Iterator[RawRow]:
    """Rows of one input, undecoded rows marked with a reason. Raises `InputError` for unreadable files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return _read_dataset_dir(path)
        if (path / ".direct-data" / "owner.json").is_file():  # runner.STATE_DIR: a stage output without its manifest
            raise InputError(f"{path}: a direct-data output folder without its manifest.json (deleted, or the run did not "
                             f"finish); rerun the stage that writes it")
        raise InputError(f"{path}: a folder must be a `datasets` save_to_disk folder or a direct-data stage output")
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet, ".txt": _read_txt}
    suffix = path.suffix.lower()
    if suffix in COMPRESSIONS:
        suffix = Path(path.stem).suffix.lower()
        if suffix == ".parquet":
            raise InputError(f"{path}: a compressed Parquet file; Parquet compresses itself, give the .parquet file")
    try:
        return readers[suffix](path)
    except KeyError:
        raise InputError(f"{path}: unsupported format {path.name!r} (use one of {', '.join(SUFFIXES)}, the text formats also as "
                         f"{', '.join(COMPRESSIONS)}, or a datasets folder)") from None


def _pick_column(record: dict, text_column: str | None) -> str | None:
    if text_column is not None:
        return text_column if text_column in record else None
    for c in DEFAULT_TEXT_COLUMNS:
        if c in record:
            return c
    return None


def read_prompts(
    paths: list[str | Path],
    *,
    text_column: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> ReadResult:
    """Read, normalise, validate and de-duplicate prompts from `paths`, in the order given.

    The first occurrence of a text is kept (with its other columns in `meta`); later exact
    duplicates (after normalisation) are merged into it and counted.
    """
    result = ReadResult()
    seen: dict[str, Prompt] = {}
    for path in paths:
        n_source = 0
        for r in iter_raw_rows(path):
            result.read += 1
            n_source += 1
            if r.record is None:
                result.rejects.append(Reject(r.source, r.row, r.error or "unreadable", r.detail, r.raw))
                continue
            if len(result.columns) < 64:
                result.columns.update(map(str, r.record))
            col = _pick_column(r.record, text_column)
            if col is None:
                want = text_column or "/".join(DEFAULT_TEXT_COLUMNS)
                result.rejects.append(Reject(r.source, r.row, "missing_column", f"no {want} column", json.dumps(r.record, default=str)))
                continue
            value = r.record[col]
            if not isinstance(value, str):
                result.rejects.append(Reject(r.source, r.row, "wrong_type", f"{col} is {type(value).__name__}, not a string", json.dumps(value, default=str)))
                continue
            if _has_surrogates(value):
                result.rejects.append(Reject(r.source, r.row, "not_utf8", "text is not valid UTF-8", value.encode("utf-8", "replace").decode()))
                continue
            text = normalize_text(value)
            if not text:
                result.rejects.append(Reject(r.source, r.row, "empty", "text is empty after whitespace folding", value))
                continue
            if not any(c.isalnum() for c in text):  # control or zero-width characters, punctuation, emoji only
                result.rejects.append(Reject(r.source, r.row, "empty", "text has no letter or digit", value))
                continue
            if len(text) > max_chars:
                result.rejects.append(Reject(r.source, r.row, "too_long", f"{len(text)} chars > max_chars={max_chars}", text))
                continue
            pid = prompt_id(text)
            if pid in seen:
                seen[pid].n_duplicates += 1
                result.merged += 1
                continue
            meta = {k: v for k, v in r.record.items() if k != col}
            p = Prompt(pid, text, r.source, r.row, meta)
            seen[pid] = p
            result.prompts.append(p)
        result.per_source[str(path)] = n_source
    assert result.accounted()
    return result
