"""Rewrites that change only a stated quantity: "heated to 250°C" -> "heated to 40°C".

An instruction-tuned LLM asked for a *magnitudes* negative of a prompt that states a number often
changes just that number. The sentence embedder and the learnt validator read such a pair as a copy
(cosine ~0.99, one token changed; the labelled set has no such rows), although the described physics
differs: ice at 90°C melts, a drop at 40°C does not dance on the pan. This module reads the quantities
(a number and its unit) of both texts and, when they are all that differs, says what changed:

- a quantity of *behaviour* (a temperature, speed, frequency, force, pressure, angle, a height or
  distance of the motion) changed enough to look different: a **magnitudes** change;
- only an object's size or weight ("a 30lb kettlebell" -> "a 300lb kettlebell", "10 cm tall"): a
  static size change, the labelling guide's `static_size_only`;
- too little to look different (25°C -> 27°C, 5 m/s -> 6 m/s): a `copy`.

Durations ("over 30 hours"), percentages, bare counts and the camera's numbers ("from 10 feet away",
"a 50mm lens") are not read (`None`): a time-lapse's duration, a count of objects or the camera's
distance is framing or scene, left to the model. Pure functions, no I/O.

Example:
    >>> [c.describe() for c in quantity_edit("Ice sits at -10°C.", "Ice sits at 90°C.")]
    ['temperature -10°C -> 90°C']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: a temperature change at least this many kelvin (or one across 0°C or 100°C) is visible
MIN_TEMPERATURE_DELTA = 20.0  # also enough for bare degrees (an angle, or a temperature without its scale)
#: any other quantity must change by at least this factor (or change sign, or to or from zero)
MIN_FACTOR = 2.0

# unit (lower case, spaces collapsed) -> (kind, factor to the kind's base unit); temperatures are
# converted by `_kelvin`
_UNITS: dict[str, tuple[str, float]] = {}


def _add(kind: str, factor: float, *names: str) -> None:
    for n in names:
        _UNITS[n] = (kind, factor)


_add("temperature", 1.0, "°c", "ºc", "° c", "degrees c", "degree c", "degrees celsius", "degree celsius", "celsius",
     "degrees centigrade", "°f", "ºf", "° f", "degrees f", "degree f", "degrees fahrenheit", "degree fahrenheit",
     "fahrenheit", "k", "kelvin", "kelvins")
_add("speed", 1.0, "m/s", "meters per second", "metres per second", "meter per second", "metre per second", "mps")
_add("speed", 1 / 3.6, "km/h", "kph", "km/hr", "kmh", "kilometers per hour", "kilometres per hour")
_add("speed", 0.44704, "mph", "miles per hour", "mi/h")
_add("speed", 0.3048, "ft/s", "feet per second")
_add("speed", 0.514444, "knots", "knot", "kn")
_add("frequency", 1.0, "rpm", "revolutions per minute", "rotations per minute")
_add("frequency", 60.0, "hz", "hertz", "revolutions per second", "rotations per second")
_add("length", 0.001, "mm", "millimeter", "millimeters", "millimetre", "millimetres")
_add("length", 0.01, "cm", "centimeter", "centimeters", "centimetre", "centimetres")
_add("length", 1.0, "m", "meter", "meters", "metre", "metres")
_add("length", 1000.0, "km", "kilometer", "kilometers", "kilometre", "kilometres")
_add("length", 0.0254, "inch", "inches")
_add("length", 0.3048, "ft", "foot", "feet")
_add("length", 0.9144, "yd", "yard", "yards")
_add("length", 1609.344, "mile", "miles")
_add("mass", 1e-6, "mg", "milligram", "milligrams")
_add("mass", 0.001, "g", "gram", "grams", "gramme", "grammes")
_add("mass", 1.0, "kg", "kilo", "kilos", "kilogram", "kilograms", "kilogramme", "kilogrammes")
_add("mass", 0.453592, "lb", "lbs", "pound", "pounds")
_add("mass", 0.0283495, "oz", "ounce", "ounces")
_add("mass", 1000.0, "t", "ton", "tons", "tonne", "tonnes")
_add("force", 1.0, "n", "newton", "newtons")
_add("force", 1000.0, "kn", "kilonewton", "kilonewtons")
_add("pressure", 1.0, "pa", "pascal", "pascals")
_add("pressure", 1000.0, "kpa")
_add("pressure", 6894.76, "psi")
_add("pressure", 1e5, "bar", "bars")
_add("pressure", 101325.0, "atm", "atmosphere", "atmospheres")
# bare degrees: an angle ("a 45 degree angle") or a temperature with its scale left out ("heated to
# 200 degrees"); either is a quantity of the motion or process
_add("degrees", 1.0, "°", "º", "degree", "degrees")
_add("volume", 0.001, "ml", "milliliter", "milliliters", "millilitre", "millilitres")
_add("volume", 1.0, "l", "liter", "liters", "litre", "litres")
_add("volume", 3.78541, "gallon", "gallons")
# read so that a changed duration, share or count is known for what it is and left to the model
_add("time", 1.0, "s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "h", "hr", "hrs",
     "hour", "hours", "day", "days", "week", "weeks", "month", "months", "year", "years")
_add("share", 1.0, "%", "percent", "per cent")

#: kinds whose change is a behaviour change (magnitudes) wherever they stand (the other kinds read
#: here are `SIZE_KINDS`)
BEHAVIOUR_KINDS = frozenset({"temperature", "speed", "frequency", "force", "pressure", "degrees"})
#: kinds that are an object's size or weight when they describe the object (`_describes_object`)
SIZE_KINDS = frozenset({"length", "mass", "volume"})
#: kinds this module does not judge: a changed one leaves the pair to the model
UNREAD_KINDS = frozenset({"time", "share", "framing"})

#: a number of at most 12 digits before and after the point: a longer one is no physical value an LLM
#: writes, and is left to the model
_DIGITS = r"\d{1,12}(?:,\d{3}){0,3}(?:\.\d{1,12})?"
_NUM = rf"[-\u2212\u2013]?{_DIGITS}"
_UNIT_ALT = "|".join(re.escape(u).replace(r"\ ", r"\s*") for u in sorted(_UNITS, key=len, reverse=True))
# a number or a range ("2-3 cm", "10 to 15 cm"), then the unit, joined by nothing, a space or a hyphen
# ("30lb", "30 lb", "30-pound"); the unit ends at a word boundary ("5 m" but not "5 monkeys")
_QUANTITY = re.compile(
    rf"(?<![\w.,])(?P<a>{_NUM})(?:\s*(?:-|\u2013|to)\s*(?P<b>{_DIGITS}))?[\s-]?"
    rf"(?P<unit>{_UNIT_ALT})(?![\w/])",
    re.IGNORECASE,
)
_DIMENSION_WORDS = frozenset("tall long wide thick deep high across heavy x by".split())
_DIMENSION_NOUNS = frozenset("diameter length width height depth size thickness radius circumference weight".split())
_FAHRENHEIT = frozenset({"°f", "ºf", "° f", "degrees f", "degree f", "degrees fahrenheit", "degree fahrenheit", "fahrenheit"})
_DETERMINERS = frozenset("a an the one each every this that its his her their our your my".split())


@dataclass(frozen=True)
class Quantity:
    """One stated quantity: its text, kind, value in the kind's base unit (kelvin for temperatures;
    a range's midpoint) and whether it describes an object's size or weight."""

    text: str
    kind: str
    value: float
    describes_object: bool


@dataclass(frozen=True)
class QuantityChange:
    old: Quantity
    new: Quantity

    @property
    def kind(self) -> str:
        return self.old.kind

    @property
    def visible(self) -> bool:
        """Large enough to change what a video shows (`MIN_TEMPERATURE_DELTA`, `MIN_FACTOR`)."""
        a, b = self.old.value, self.new.value
        lo, hi = min(a, b), max(a, b)
        if self.kind == "temperature":
            # across water's freezing or boiling point; a value at the point reads as below it ("drops
            # below 0°C" -> "below -1°C" still freezes, -> "below 15°C" does not)
            return hi - lo >= MIN_TEMPERATURE_DELTA or any((a > t) != (b > t) for t in (273.15, 373.15))
        if self.kind == "degrees" and hi - lo >= MIN_TEMPERATURE_DELTA:
            return True
        if a == b:
            return False
        if a == 0 or b == 0 or (a < 0) != (b < 0):
            return True
        return max(abs(a), abs(b)) / min(abs(a), abs(b)) >= MIN_FACTOR

    @property
    def behaviour(self) -> bool:
        """A quantity of the motion or process, not an object's size or weight."""
        return self.kind not in SIZE_KINDS or not (self.old.describes_object or self.new.describes_object)

    def describe(self) -> str:
        return f"{self.kind} {self.old.text} -> {self.new.text}"


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("\u2212", "-").replace("\u2013", "-"))


def _kelvin(value: float, unit: str) -> float:
    if unit in ("k", "kelvin", "kelvins"):
        return value
    if unit in _FAHRENHEIT:
        return (value - 32.0) * 5.0 / 9.0 + 273.15
    return value + 273.15


def _describes_object(text: str, start: int, end: int) -> bool:
    """Whether the quantity at text[start:end] is an object's size or weight: it follows a
    determiner ("a 30lb kettlebell", "a 2-meter statue") or a dimension word follows it ("10 cm
    tall", "3 cm in diameter", "1 cm x 3 cm")."""
    before = re.findall(r"[A-Za-z]+", text[max(0, start - 24):start])
    after = [w.lower() for w in re.findall(r"[A-Za-z]+", text[end:end + 24])[:2]]
    if before and (before[-1].lower() in _DETERMINERS or before[-1].lower() in ("x", "by")):
        return True
    if not after or not re.match(r"[\s)]*[A-Za-z]", text[end:]):
        return False
    return after[0] in _DIMENSION_WORDS or (after[0] == "in" and len(after) > 1 and after[1] in _DIMENSION_NOUNS)


#: a quantity in a sentence that names the camera ("Camera view from 10 feet away", "a 50mm lens",
#: "shot at 24 fps") is framing, not physics: its change is left to the model
_CAMERA = re.compile(r"\b(?:camera|lens|shot|view|zoom|focal|footage|filmed|frames? per second|fps)\b", re.IGNORECASE)


#: where a sentence ends: an end mark or ";" before white space or the end (not a decimal point), or a line break
_SENTENCE_BREAK = re.compile(r"[.!?;](?=\s|$)|\n")


def _sentence_at(text: str, start: int, end: int) -> str:
    """The sentence of `text` around text[start:end]."""
    lo = max((m.end() for m in _SENTENCE_BREAK.finditer(text, 0, start)), default=0)
    nxt = _SENTENCE_BREAK.search(text, end)
    return text[lo:nxt.start() if nxt else len(text)]


def quantities(text: str) -> list[tuple[int, int, Quantity]]:
    """The stated quantities of `text` as (start, end, Quantity), in order; one in a sentence that
    names the camera has the kind ``framing``."""
    out = []
    for m in _QUANTITY.finditer(text):
        unit = re.sub(r"\s+", " ", m.group("unit").lower())
        kind, factor = _UNITS[unit]
        a = _number(m.group("a"))
        value = (a + _number(m.group("b"))) / 2 if m.group("b") else a
        value = _kelvin(value, unit) if kind == "temperature" else value * factor
        if _CAMERA.search(_sentence_at(text, m.start(), m.end())):
            kind = "framing"
        out.append((m.start(), m.end(), Quantity(m.group(0), kind, value, _describes_object(text, m.start(), m.end()))))
    return out


def _skeleton(text: str, found: list[tuple[int, int, Quantity]]) -> str:
    parts, last = [], 0
    for s, e, _ in found:
        parts.append(text[last:s])
        parts.append("\0")
        last = e
    parts.append(text[last:])
    return " ".join("".join(parts).split())


@lru_cache(maxsize=8192)
def quantity_edit(prompt: str, negative: str) -> tuple[QuantityChange, ...] | None:
    """The quantities `negative` changed, when they are *all* it changed (the texts are otherwise
    the same, white space aside), every changed one keeps its kind, and none is a duration or a
    share (`UNREAD_KINDS`). None otherwise, and when nothing changed. Cached: the validator asks
    before its model (is the row identical, a copy by word bag?) and again for the verdict."""
    qp, qn = quantities(prompt), quantities(negative)
    if not qp or len(qp) != len(qn) or _skeleton(prompt, qp) != _skeleton(negative, qn):
        return None
    changes = []
    for (_, _, a), (_, _, b) in zip(qp, qn):
        if a.text == b.text:
            continue
        if a.kind != b.kind or a.kind in UNREAD_KINDS:
            return None
        changes.append(QuantityChange(a, b))
    return tuple(changes) or None
