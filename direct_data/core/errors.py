"""The one error type a user can cause: the CLI prints it as one line and exits with code 2.

Anything else that escapes is a bug and stays a traceback. Raise `UserError` (or a subclass) for
bad values, bad input files, a refused output folder, a missing model folder: never for a broken
invariant of our own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A problem the user can fix (a value, a path, an input); the message says how."""


class ConfigError(UserError):
    """A config value or key is invalid (CLI flag, TOML key, `--set`)."""


class InputError(UserError):
    """An input file or folder cannot be used as given."""


def first_line(e: BaseException) -> str:
    """``Type: first line of the message`` of a library's exception, to quote in a one-line error
    (for pydantic's ValidationError, whose first line only counts the errors, the first error's)."""
    text = str(e)
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            text = str(errors()[0]["msg"])
        except (TypeError, IndexError, KeyError):
            pass
    lines = text.strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


@contextmanager
def cannot_load(what: str, error: type[UserError] = InputError,
                catch: tuple[type[BaseException], ...] = (OSError, ValueError)) -> Iterator[None]:
    """A library's failure to load a model or weights file (`catch`, by default `OSError`,
    `ValueError`: not a model folder, one transformers cannot read, missing or corrupt weights) as
    one line naming `what`."""
    try:
        yield
    except catch as e:
        raise error(f"{what}: cannot load it ({first_line(e)})") from None


class OutputError(UserError):
    """The output folder cannot be written as asked (not ours, not writable, equal to an input)."""
