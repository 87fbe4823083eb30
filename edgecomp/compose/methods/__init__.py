"""Composition methods, by name (a registry in the style of mergekit's merge methods).

Each method turns weighted adapters (:class:`Term`) into a :class:`Composed`: exact low-rank factors
``{module: (A, B)}`` with one scale where the method has them (so the result merges like any adapter,
ΔW = scale·B·A, and is written back as a PEFT adapter exactly), or dense ΔW per module otherwise.
Weights are per module (``Term.weight_for``): per-module-type weights and layer ranges apply to
every method. One module per method registers it with its parameters (:mod:`.registry`); importing
this package registers them all.
"""

from . import dare, delta, params, ties  # noqa: F401  (each registers its method)
from .apply import check_compatible, compose
from .composed import Composed
from .registry import METHODS, Method, Param, get_method, methods_help, parameter_help, parameter_names, register

__all__ = [
    "METHODS",
    "Composed",
    "Method",
    "Param",
    "check_compatible",
    "compose",
    "get_method",
    "methods_help",
    "parameter_help",
    "parameter_names",
    "register",
]
