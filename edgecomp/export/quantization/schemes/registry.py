"""The registry of quantization schemes: what each ``--quantize`` name means, takes and is keyed by.

A scheme declares its weight-only configuration (or none), the merge-export options it takes,
whether it calibrates on text, whether a graph with run-time LoRA inputs can carry it, the graph
conversion it applies and a ``version`` of its output. ``--quantize``'s help, the check of the
options, the quantizer (:func:`edgecomp.export.quantization.apply.quantize_model`) and the export
cache key (:func:`edgecomp.export.merge_export.cached_export`) are built from these declarations,
so bumping one scheme's version rebuilds that scheme's exports and no other's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ....errors import EdgecompError
from ....fsutil import sha256_file

if TYPE_CHECKING:
    import onnx

    from ..weight_only import WeightOnlyConfig

CALIBRATION = "calibration"  # the option every scheme that calibrates takes: the text files


@dataclass(frozen=True)
class Scheme:
    """One quantization scheme.

    ``config`` is the weight-only configuration it means (MatMulNBits blocks, calibrated when the
    configuration asks for GPTQ or head smoothing), None for a scheme that keeps float weights
    (the LM head is then only tied). ``configure(config, **given)`` applies the merge-export
    ``options`` it declares (``block_size``, ``tune_steps``, ``eight_bit_layers``) to
    ``config``. ``convert`` rewrites the whole graph last (``fp16``'s float16), before the
    ``logits_to_keep`` input every export gets.
    """

    name: str
    version: int  # bumped whenever the scheme's output changes: its cached exports are rebuilt
    help: str  # one line: what the name means, for --quantize's help
    config: WeightOnlyConfig | None = None
    options: tuple[str, ...] = ()  # keyword options ``configure`` takes
    configure: Callable[..., WeightOnlyConfig] | None = None
    needs_calibration: bool = False  # calibrates on text: takes --calibration, its files' hashes key the export
    supports_lora_inputs: bool = True  # a graph with run-time LoRA inputs can be quantized by it
    convert: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None

    def __post_init__(self):
        if self.options and (self.config is None or self.configure is None):
            raise ValueError(f"scheme {self.name!r}: options need a config and a configure function")
        if CALIBRATION in self.options:
            raise ValueError(f"scheme {self.name!r}: say needs_calibration=True instead of a calibration option")

    def takes(self, option: str) -> bool:
        """Whether merge-export's ``option`` (a keyword, e.g. ``block_size``) applies to this scheme."""
        return option in self.options or (option == CALIBRATION and self.needs_calibration)

    def configured(self, **given) -> WeightOnlyConfig | None:
        """``config`` with merge-export's options ``given`` applied (None or an empty list: not
        given); an option the scheme does not take is refused, naming the schemes that take it."""
        given = {option: value for option, value in given.items() if value not in (None, [])}
        for option in given:
            if not self.takes(option):
                raise EdgecompError(_refusal(option))
        tuning = {option: value for option, value in given.items() if option in self.options}
        return self.configure(self.config, **tuning) if tuning else self.config

    def key(self, config: WeightOnlyConfig | None = None, calibration: Sequence[str | Path] | None = None) -> dict:
        """What names this scheme's output in a cache: its name, version and full configuration
        (``config``, default its own), and the calibration files' sha256 when it calibrates."""
        config = config or self.config
        key = {"quantize": self.name, "quantizer": self.version, "weights": config.describe() if config else None}
        if calibration and self.needs_calibration:
            key[CALIBRATION] = [sha256_file(path) for path in calibration]
        return key


SCHEMES: dict[str, Scheme] = {}


def register(scheme: Scheme) -> Scheme:
    """Make ``scheme`` a ``--quantize`` choice (a scheme module calls this on import)."""
    if scheme.name in SCHEMES:
        raise ValueError(f"quantization scheme {scheme.name!r} is registered twice")
    SCHEMES[scheme.name] = scheme
    return scheme


def get_scheme(name: str) -> Scheme:
    """The registered scheme ``name``, or an error listing the registered ones."""
    if name not in SCHEMES:
        raise EdgecompError(f"unknown quantization {name!r}; choose one of {', '.join(SCHEMES)}")
    return SCHEMES[name]


def taking(option: str) -> list[str]:
    """The names of the schemes that take merge-export's ``option``."""
    return [scheme.name for scheme in SCHEMES.values() if scheme.takes(option)]


def option_help(option: str, text: str) -> str:
    """A merge-export option's help: the schemes that take it, then ``text``."""
    return f"{', '.join(taking(option))}: {text}"


def choices_help() -> str:
    """``--quantize``'s help: every scheme with its one line, e.g. ``none (fp32), … or int4 (…).``"""
    choices = [f"{scheme.name} ({scheme.help})" for scheme in SCHEMES.values()]
    return (", ".join(choices[:-1]) + " or " if len(choices) > 1 else "") + choices[-1] + "."


def _refusal(option: str) -> str:
    """The error for ``option`` given to a scheme that does not take it, naming with it every
    option the same schemes take: ``--block-size, --tune-steps and --eight-bit-layers apply to
    --quantize int4 only``."""
    takers = taking(option)
    if not takers:
        return f"no --quantize scheme takes --{option.replace('_', '-')}"
    declared = []
    for scheme in SCHEMES.values():
        declared += [*scheme.options, *([CALIBRATION] if scheme.needs_calibration else [])]
    flags = [f"--{o.replace('_', '-')}" for o in dict.fromkeys(declared) if taking(o) == takers]
    listed = flags[0] if len(flags) == 1 else f"{', '.join(flags[:-1])} and {flags[-1]}"
    return f"{listed} {'applies' if len(flags) == 1 else 'apply'} to --quantize {' or '.join(takers)} only"
