"""Config: one declaration per field, from which the dataclass, the TOML reader, the CLI options and
the config hash all come.

A stage's config is a dataclass whose fields are declared with `option`::

    @dataclass
    class PartitionConfig(StageConfig):
        SECTION = "partition"
        k: int | None = option(None, min=2, help="Number of partitions.", default_help="auto: round(sqrt(N/4))")
        cache_dir: str | None = option(None, output=False, help="Embedding cache folder.")

Each declaration carries the type (the annotation), the range (`min`, `max`, `choices`), the help
text, and whether the field changes the output (`output=False` fields are left out of the config
hash, so changing them never triggers a recompute). Values are checked when the object is built,
before any work: a wrong type, a value out of range, an unknown TOML section or key is a
`ConfigError`, which the CLI prints as one line (exit code 2).

Precedence: the declared default < `--config FILE.toml` (top-level keys, then the stage's own
`[section]`) < flags typed on the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from direct_data.core.errors import ConfigError

__all__ = ["ConfigError", "StageConfig", "option", "load_toml", "config_hash", "KNOWN_SECTIONS"]

T = TypeVar("T", bound="StageConfig")

#: Every table a direct-data TOML file may hold: one per command, plus the pipeline's own.
KNOWN_SECTIONS = ("pipeline", "partition", "perturb", "validate", "encode", "train", "sample")


def option(
    default: Any = MISSING,
    *,
    help: str,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
    output: bool = True,
    default_help: str | None = None,
    flag: str | None = None,
    short: str | None = None,
    cli: bool = True,
    multiple_flag: str | None = None,
) -> Any:
    """Declare a config field. `output=False`: the field does not change the output bytes (left out
    of the config hash). `default_help`: what a None default means, shown in `--help`. `flag`: the
    CLI flag when it differs from `--field-name`; `multiple_flag`: for tuple fields, the repeatable
    flag (e.g. `--axis`); `cli=False`: TOML / `--set` only."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "output": output, "default_help": default_help,
            "flag": flag, "short": short, "cli": cli, "multiple_flag": multiple_flag}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- types


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the base type, whether None is allowed) of an annotation such as `int | None`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        none_ok = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], none_ok
        return tp, none_ok
    return tp, False


def _type_name(tp: Any) -> str:
    base, none_ok = _unwrap(tp)
    origin = typing.get_origin(base)
    if origin in (tuple, list):
        args = typing.get_args(base)
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis:  # tuple[float, float]: a fixed length
            name = f"list of {len(args)} {_type_name(args[0])}s"
        else:
            name = f"list of {_type_name(args[0])}" if args else "list"
    elif origin is dict or base is dict:
        name = "table"
    else:
        name = {int: "integer", float: "number", str: "string", bool: "true/false"}.get(base, getattr(base, "__name__", str(base)))
    return name + (" or nothing" if none_ok else "")


#: how a list value is written, said in the error about one
_LIST_FORMS = " (TOML [a, b]; on the command line a,b)"


def coerce(name: str, value: Any, tp: Any) -> Any:
    """`value` checked against the annotation `tp` (ints are accepted for floats, lists for tuples)."""
    base, none_ok = _unwrap(tp)
    if value is None:
        if none_ok:
            return None
        raise ConfigError(f"{name}: a value is required ({_type_name(tp)})")
    origin = typing.get_origin(base)
    if origin in (tuple, list):
        (item, *_rest) = typing.get_args(base) or (Any,)
        if isinstance(value, str):
            value = [value]
        args = typing.get_args(base)
        fixed = len(args) if origin is tuple and len(args) > 1 and args[1] is not Ellipsis else None
        if not isinstance(value, (list, tuple)) or (fixed is not None and len(value) != fixed):
            raise ConfigError(f"{name}: expected {_type_name(tp)}{_LIST_FORMS}, got {value!r}")
        try:
            items = [coerce(name, v, item) for v in value]
        except ConfigError:  # name the whole list's type and its forms, not one item's
            raise ConfigError(f"{name}: expected {_type_name(tp)}{_LIST_FORMS}, got {value!r}") from None
        return tuple(items) if origin is tuple else items
    if origin is dict or base is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, got {value!r}")
        return dict(value)
    if base is Any:
        return value
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):  # nan passes every range check, inf every minimum
                raise ConfigError(f"{name}: expected a finite number, got {value}")
            return float(value)
    elif base is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{name}: expected {_type_name(tp)}, got {value!r}")


def _check_range(name: str, value: Any, meta: dict) -> None:
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if v is None:
            continue
        if meta.get("choices") is not None and v not in meta["choices"]:
            raise ConfigError(f"{name}: {v!r} is not one of {', '.join(map(str, meta['choices']))}")
        if meta.get("min") is not None and isinstance(v, (int, float)) and v < meta["min"]:
            raise ConfigError(f"{name}: must be >= {meta['min']}, got {v}")
        if meta.get("max") is not None and isinstance(v, (int, float)) and v > meta["max"]:
            raise ConfigError(f"{name}: must be <= {meta['max']}, got {v}")


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def check_model_path(name: str, value: str | None) -> None:
    """A `ConfigError` when a model given as a local path (absolute, `./`, `~`, more than one `/`)
    does not exist; a hub id (`name` or `owner/name`) and an existing path pass unchecked."""
    if value is None or _HUB_ID.fullmatch(value) or Path(value).expanduser().exists():
        return
    raise ConfigError(f"{name} {value}: no such folder (give a local model folder or a hub id owner/name)")


def check_url(name: str, value: str | None) -> None:
    """A `ConfigError` unless `value` (when given) is an http(s) URL with a host and a valid port:
    a server URL that cannot work is refused up front, not after the client's retries."""
    if value is None:
        return
    from urllib.parse import urlsplit

    try:
        u = urlsplit(value)
        u.port  # noqa: B018 (raises ValueError for a port that is not a number in 0..65535)
    except ValueError as e:
        raise ConfigError(f"{name} {value}: not a URL ({e})") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(f"{name} {value}: give an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000/v1")


# --------------------------------------------------------------------------- the base class


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageConfig:
    """Base of every config dataclass: typed, range-checked fields declared with `option`."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = coerce(f.name, getattr(self, f.name), hints[f.name])
            _check_range(f.name, value, dict(f.metadata))
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Checks across fields; raise `ConfigError`. Override in a subclass."""

    # ---- the declaration, for the CLI and the hash
    @classmethod
    def declared(cls) -> list[dataclasses.Field]:
        return [f for f in fields(cls) if "help" in f.metadata]

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def default_of(cls, f: dataclasses.Field) -> Any:
        if f.default is not MISSING:
            return f.default
        if f.default_factory is not MISSING:
            return f.default_factory()
        return None

    def hashed(self) -> dict[str, Any]:
        """The fields that change the output (the config hash covers these)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.metadata.get("output", True)}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    def changes(self, old: dict[str, Any]) -> list[str]:
        """Human-readable differences between `old` (a `hashed()` dict) and this config."""
        new = self.hashed()
        out = []
        for k in sorted(set(new) | set(old)):
            if new.get(k, "<unset>") != old.get(k, "<unset>"):
                out.append(f"{k} {json.dumps(old.get(k), default=str)} -> {json.dumps(new.get(k), default=str)}")
        return out

    # ---- building
    @classmethod
    def build(cls: type[T], *, toml: dict[str, Any] | None = None, cli: dict[str, Any] | None = None, **values: Any) -> T:
        """Defaults < `toml` < `cli` < `values`; unknown keys are a `ConfigError` naming the known ones."""
        merged: dict[str, Any] = {}
        for source, what in ((toml or {}, "config key"), (cli or {}, "option"), (values, "option")):
            unknown = sorted(set(source) - set(cls.keys()))
            if unknown:
                raise ConfigError(f"unknown {cls.SECTION or cls.__name__} {what}{'s' if len(unknown) > 1 else ''}: "
                                  f"{', '.join(unknown)} (known: {', '.join(cls.keys())})")
            merged.update(source)
        try:
            return cls(**merged)
        except TypeError as e:  # a required field missing
            raise ConfigError(f"{cls.SECTION or cls.__name__}: {e}") from None


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


# --------------------------------------------------------------------------- TOML


def read_toml(path: str | Path) -> dict[str, Any]:
    """A whole direct-data TOML file, its tables checked against `KNOWN_SECTIONS`."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    unknown = sorted(k for k, v in data.items() if isinstance(v, dict) and k not in KNOWN_SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section{'s' if len(unknown) > 1 else ''} [{'], ['.join(unknown)}] "
                          f"(known: {', '.join(KNOWN_SECTIONS)})")
    return data


def load_toml(path: str | Path | None, cls: type[StageConfig]) -> dict[str, Any]:
    """The values a TOML file gives `cls`: top-level keys that `cls` declares, then its `[SECTION]`
    table (every key of which must be known). A top-level key no known config declares is an error."""
    if path is None:
        return {}
    data = read_toml(path)
    known = set(cls.keys())
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    stray = sorted(k for k in top if k not in known and k not in _ALL_KEYS())
    if stray:
        raise ConfigError(f"{path}: unknown top-level key{'s' if len(stray) > 1 else ''} {', '.join(stray)}")
    section = data.get(cls.SECTION, {})
    _ALL_KEYS()  # every config class registered
    tables = [(cls.SECTION, section, known)] + [(n, t, set(_REGISTRY[n].keys())) for n, t in sorted(data.items())
                                                 if n != cls.SECTION and isinstance(t, dict) and n in _REGISTRY]
    for name, table, keys in tables:  # a typo in another stage's table of the same file is found now, not when that stage runs
        unknown = sorted(set(table) - keys)
        if unknown:
            raise ConfigError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} in [{name}]: {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(keys))})")
    return {**{k: v for k, v in top.items() if k in known}, **section}


_REGISTRY: dict[str, type[StageConfig]] = {}

#: the modules that declare the config of each section (imported to check top-level TOML keys)
_CONFIG_MODULES = ("direct_data.stages.partition", "direct_data.stages.perturb", "direct_data.stages.validate",
                   "direct_data.stages.encode", "direct_data.training.config", "direct_data.training.sample")


def register(cls: type[T]) -> type[T]:
    """Class decorator: record a config class under its SECTION (for the top-level key check)."""
    _REGISTRY[cls.SECTION] = cls
    return cls


def _ALL_KEYS() -> set[str]:
    import importlib

    for m in _CONFIG_MODULES:
        importlib.import_module(m)
    return {k for c in _REGISTRY.values() for k in c.keys()}
