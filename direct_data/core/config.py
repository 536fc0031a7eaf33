"""Configuration: dataclass defaults < `--config FILE.toml` < flags given on the command line."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def load_toml(path: str | Path | None, section: str) -> dict[str, Any]:
    """The `[section]` table of a TOML file (top-level keys also count, a section overrides them)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    return {**top, **data.get(section, {})}


def build_config(cls: type[T], *, toml: dict[str, Any], cli: dict[str, Any], explicit: set[str]) -> T:
    """Instantiate `cls`: its defaults, overridden by `toml`, overridden by the CLI flags in `explicit`."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(toml) - names)
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    values = {k: v for k, v in toml.items()}
    # only flags the user typed override; an option's default is the dataclass default anyway
    values.update({k: v for k, v in cli.items() if k in names and k in explicit})
    return cls(**values)
