"""The registry of composition methods: what each one is called, computes and takes.

A method declares its parameters (:class:`Param`), the kind of update it gives (``output``) and a
``version`` of its maths. Specs, ``--method`` help, ``--explain`` and the cache key are built from
these declarations, so a parameter cannot be left out of the key that names an export, and a change
to a method's maths (a new ``version``) rebuilds the exports it made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ...errors import EdgecompError

if TYPE_CHECKING:
    from ..terms import Term
    from .composed import Composed

OUTPUTS = ("low_rank", "dense")


@dataclass(frozen=True)
class Param:
    """One parameter of a method: a given value is converted to ``type`` and must lie in its bounds."""

    name: str
    type: type  # int or float
    default: int | float
    help: str  # one line: what the value means
    low: float | None = None  # None: no lower bound
    high: float | None = None  # None: no upper bound (``high`` itself is allowed)
    open_low: bool = False  # whether ``low`` itself is refused, as in (0, 1]

    @property
    def allowed(self) -> str:
        """The values it takes, e.g. ``(0, 1]``, ``>= 0`` or ``an integer``."""
        if self.low is not None and self.high is not None:
            return f"{'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        return "an integer" if self.type is int else "a number"

    def convert(self, value: Any, method: str) -> int | float:
        """``value`` as this parameter's type, or an error naming the method, parameter and allowed values."""
        number = _integer(value) if self.type is int else _number(value)
        if number is None or not self._within(number):
            raise EdgecompError(f"method '{method}': {self.name} must be {self.allowed}, not {value!r}")
        return number

    def _within(self, number: int | float) -> bool:
        if math.isnan(number) or (self.high is not None and number > self.high):
            return False
        return self.low is None or (number > self.low if self.open_low else number >= self.low)


def _number(value: Any) -> float | None:
    """``value`` as a float (numbers and numeric text; not booleans), None if it is none."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _integer(value: Any) -> int | None:
    """``value`` as an int (integers, whole floats and integer text; not booleans), None if it is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


@dataclass(frozen=True)
class Method:
    """A composition method: ``function(terms, parameters)`` gets every declared parameter's value."""

    name: str
    function: Callable[[list[Term], Mapping[str, Any]], Composed]
    summary: str  # one line: what it computes
    output: str  # "low_rank": exact factors (written as an adapter as they are); "dense": ΔW per module
    version: int  # bumped whenever the maths changes, so cached exports are rebuilt
    reference: str  # the paper or page the method follows
    params: tuple[Param, ...] = ()

    def values(self, given: Mapping[str, Any]) -> dict[str, int | float]:
        """Every declared parameter's value: ``given``'s, converted and checked, else its default."""
        names = [p.name for p in self.params]
        for key in given:
            if key not in names:
                raise EdgecompError(
                    f"method '{self.name}' takes no parameter '{key}' (its parameters: {', '.join(names) or 'none'})"
                )
        return {p.name: p.convert(given[p.name], self.name) if p.name in given else p.default for p in self.params}

    def key(self, given: Mapping[str, Any]) -> dict:
        """What names the method's result in a cache: its name, version and every parameter's value."""
        return {"method": self.name, "method_version": self.version, "parameters": self.values(given)}


METHODS: dict[str, Method] = {}


def register(name: str, *, summary: str, output: str, version: int, reference: str, params: tuple[Param, ...] = ()):
    """Decorator: register ``function(terms, parameters) -> Composed`` as the method ``name``."""
    if output not in OUTPUTS:
        raise ValueError(f"method '{name}': output must be one of {', '.join(OUTPUTS)}, not '{output}'")
    if name in METHODS:
        raise ValueError(f"method '{name}' is registered twice")
    if len({p.name for p in params}) != len(params):
        raise ValueError(f"method '{name}': two parameters share a name")

    def wrap(function):
        METHODS[name] = Method(name, function, summary, output, version, reference, tuple(params))
        return function

    return wrap


def get_method(name: str) -> Method:
    """The registered method ``name``, or an error listing the registered ones."""
    if not isinstance(name, str) or name not in METHODS:
        raise EdgecompError(f"unknown method '{name}' (choose from {', '.join(METHODS)})")
    return METHODS[name]


def parameter_names() -> set[str]:
    """Every parameter name some registered method declares: the method keys a spec may have."""
    return {p.name for method in METHODS.values() for p in method.params}


def methods_help() -> str:
    """Every method's name, summary and parameters, for ``--method``'s help."""
    parts = []
    for m in METHODS.values():
        declared = f" (parameters: {', '.join(p.name for p in m.params)})" if m.params else ""
        parts.append(f"{m.name}: {m.summary}{declared}")
    return "; ".join(parts)


def parameter_help(name: str) -> str:
    """What the parameter ``name`` means to each method that declares it, its values and default."""
    return "; ".join(
        f"{m.name}: {p.help}, {p.allowed}, default {p.default}"
        for m in METHODS.values()
        for p in m.params
        if p.name == name
    )
