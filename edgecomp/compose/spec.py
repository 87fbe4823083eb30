"""A composition spec: which adapters, how weighted, which method — from YAML or the command line.

A spec gives its adapters explicitly, or names a scenario that picks them from a library folder:

- ``arithmetic`` (scenario 1): ``task_src + λ_t·lang_tgt − λ_s·lang_src``, the English task adapter
  moved to the target language by language arithmetic;
- ``related`` (scenario 2): task adapters of languages related to the target, weighted by URIEL
  distance, optionally with ``+ λ_t·lang_tgt − λ_s·Σ wⱼ·lang_j``.

Its method's parameters are top-level keys (``density: 0.5``), refused for a method that does
not declare them. Resolving a spec yields explicit terms. The resolved spec — adapters by content
hash, weights, and the method's name, version and every parameter's value — is canonical JSON, and
its sha256 names the spec's exports in the cache, so the same spec always finds the same export.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..data.yamlfile import check_keys
from ..errors import EdgecompError
from ..fsutil import sha256_file
from .adapters import WEIGHTS, LoraAdapter, load_adapter
from .methods import get_method, parameter_names
from .terms import Term

SCENARIOS = ("arithmetic", "related")
_TERM_KEYS = {"path", "weight", "attention", "mlp", "layers"}
# a spec's own keys; the method's parameters come on top (``spec_keys``)
_SPEC_KEYS = {
    "adapters",
    "method",
    "scenario",
    "library",
    "target",
    "source",
    "top_k",
    "lambda_t",
    "lambda_s",
    "language_adapters",
}
DEFAULT_METHOD = "params"


def spec_keys() -> set[str]:
    """Every key a spec may have: its own and each registered method's parameters (a parameter
    named like a spec key would be read as both: refused)."""
    clash = _SPEC_KEYS & parameter_names()
    if clash:
        raise EdgecompError(f"a merge method declares parameter '{sorted(clash)[0]}', which is a spec key")
    return _SPEC_KEYS | parameter_names()


def method_parameters(spec: dict) -> tuple[str, dict]:
    """The spec's method and the parameters it gives it, checked and converted (the others take
    their defaults); a parameter the method does not declare is refused."""
    method = get_method(spec.get("method", DEFAULT_METHOD))
    given = {name: spec[name] for name in parameter_names() if name in spec}
    values = method.values(given)
    return method.name, {name: values[name] for name in given}


def method_key(spec: dict) -> dict:
    """The method's part of a cache key, from a spec without loading its adapters: its name,
    version and every declared parameter's value (as in :meth:`Resolved.canonical`)."""
    method, parameters = method_parameters(spec)
    return get_method(method).key(parameters)


@dataclass
class Resolved:
    """Explicit terms plus what the scenario chose, for ``--explain`` and the manifest."""

    terms: list[Term]
    method: str
    parameters: dict  # the method's parameters the spec gave, checked; the others take their defaults
    explain: list = field(default_factory=list)  # (language, adapter, distances, weight) rows

    def canonical(self) -> dict:
        """The composition as JSON: the method's name, version and every declared parameter's value
        (from its declaration, defaults included) and each adapter by content."""
        return {
            **get_method(self.method).key(self.parameters),
            "adapters": [
                {
                    "sha256": sha256_file(t.adapter.path / WEIGHTS),
                    "config_r": t.adapter.rank,
                    "scale": t.adapter.scale,
                    "weight": t.weight,
                    "attention": t.attention,
                    "mlp": t.mlp,
                    "layers": list(t.layers) if t.layers else None,
                }
                for t in self.terms
            ],
        }

    def digest(self, **extra) -> str:
        text = json.dumps({**self.canonical(), **extra}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def related(self) -> list[dict]:
        """What a ``related`` scenario chose: language, adapter, URIEL distances, weight."""
        return [
            {"lang": lang, "adapter": str(adapter.path), "distances": distances, "weight": weight}
            for lang, adapter, distances, weight in self.explain
        ]

    def prompt(self) -> str:
        """The prompt the composition answers: its task adapters' (they must agree), else the unnamed one."""
        from ..data.prompts import UNNAMED_PROMPT

        names = set()
        for t in self.terms:
            meta = t.adapter.meta or {}
            if meta.get("kind") == "task":
                names.add((meta.get("options") or {}).get("prompt") or UNNAMED_PROMPT)
            elif meta.get("kind") == "composition" and meta.get("prompt"):
                names.add(meta["prompt"])
        if len(names) > 1:
            raise EdgecompError(f"the task adapters were trained with different prompts ({', '.join(sorted(names))})")
        return names.pop() if names else UNNAMED_PROMPT

    def vocabularies(self) -> dict[str, Path] | None:
        """The folder of each adapter, by name, when the composition is for one language: exactly
        one target language among its positively weighted language adapters, only language and
        task adapters (an already composed adapter's languages are not known), and every one with
        a ``vocabulary.json`` (:mod:`edgecomp.data.vocabulary`): the tokens the text its adapters
        learned from holds, which an export's trimmed head keeps. Else None: an export of it keeps
        the whole head unless told which text to trim to."""
        from ..data.vocabulary import VOCABULARY

        kinds = [(t, (t.adapter.meta or {}).get("kind")) for t in self.terms]
        targets = {(t.adapter.meta or {}).get("lang") for t, kind in kinds if kind == "language" and t.weight > 0}
        if len(targets) != 1 or any(kind not in ("language", "task") for _, kind in kinds):
            return None
        folders = {t.adapter.name: t.adapter.path for t, _ in kinds}
        return folders if all((f / VOCABULARY).is_file() for f in folders.values()) else None

    def describe(self) -> list[dict]:
        return [
            {
                "path": str(t.adapter.path),
                "kind": (t.adapter.meta or {}).get("kind"),
                "lang": (t.adapter.meta or {}).get("lang"),
                "weight": t.weight,
                "attention": t.attention,
                "mlp": t.mlp,
                "layers": list(t.layers) if t.layers else None,
                "rank": t.adapter.rank,
                "sha256": sha256_file(t.adapter.path / WEIGHTS),
            }
            for t in self.terms
        ]


def _number(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EdgecompError(f"{what}: '{value}' is not a number") from None


def _layers(value, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        lo, sep, hi = value.partition("-")
        value = [lo, hi if sep else lo]
    try:
        lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise EdgecompError(f"{what}: layers must be 'A-B' or [A, B], not {value!r}") from None
    if lo < 0 or hi < lo:
        raise EdgecompError(f"{what}: bad layer range {lo}-{hi}")
    return lo, hi


def parse_term_arg(spec: str) -> dict:
    """``PATH[:WEIGHT[:key=value,...]]``, e.g. ``runs/lang-sw:1:attention=0.5,layers=0-8``."""
    path, _, rest = spec.partition(":")
    weight, _, extra = rest.partition(":")
    item: dict = {"path": path, "weight": weight or 1.0}
    for pair in filter(None, extra.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or key not in _TERM_KEYS - {"path", "weight"}:
            raise EdgecompError(f"--adapter '{spec}': unknown option '{pair}' (attention=, mlp=, layers=A-B)")
        item[key] = value
    return item


def term_from_dict(item, root: Path) -> Term:
    if isinstance(item, str):
        item = parse_term_arg(item)
    if not isinstance(item, dict) or "path" not in item:
        raise EdgecompError(
            f"adapter entry {item!r}: expected a mapping with a path (keys {', '.join(sorted(_TERM_KEYS))})"
        )
    check_keys(item, _TERM_KEYS, f"adapter entry '{item['path']}'")
    what = f"adapter '{item['path']}'"
    return Term(
        load_adapter(root / str(item["path"])),
        weight=_number(item.get("weight", 1.0), what),
        attention=_number(item.get("attention", 1.0), what),
        mlp=_number(item.get("mlp", 1.0), what),
        layers=_layers(item.get("layers"), what),
    )


def load_library(folder: Path) -> list[LoraAdapter]:
    """Every adapter folder (one with ``adapter_config.json``) under ``folder``, sorted by path."""
    if not folder.is_dir():
        raise EdgecompError(f"{folder}: no such adapter library folder")
    return [load_adapter(p.parent) for p in sorted(folder.rglob("adapter_config.json"))]


def _is(adapter: LoraAdapter, kind: str, lang: str) -> bool:
    """Whether ``adapter`` is a ``kind`` adapter for ``lang`` ('hi' and 'hin' are the same language)."""
    from .languages import iso639_3

    meta = adapter.meta or {}
    return meta.get("kind") == kind and bool(meta.get("lang")) and iso639_3(meta["lang"]) == iso639_3(lang)


def _pick(library: list[LoraAdapter], kind: str, lang: str) -> LoraAdapter:
    found = [a for a in library if _is(a, kind, lang)]
    if not found:
        raise EdgecompError(f"the library has no {kind} adapter for '{lang}'")
    return min(found, key=lambda a: ((a.meta or {}).get("final_loss", float("inf")), a.path.name))


def _arithmetic(spec: dict, library: list[LoraAdapter]) -> tuple[list[Term], list]:
    target, source = spec["target"], spec.get("source", "en")
    lt, ls = _number(spec.get("lambda_t", 1.0), "lambda_t"), _number(spec.get("lambda_s", 1.0), "lambda_s")
    terms = [
        Term(_pick(library, "task", source), 1.0),
        Term(_pick(library, "language", target), lt),
        Term(_pick(library, "language", source), -ls),
    ]
    return terms, []


def _related(spec: dict, library: list[LoraAdapter]) -> tuple[list[Term], list]:
    from .related import select_related

    target = spec["target"]
    top_k = spec.get("top_k")
    chosen = select_related(library, target, kind="task", top_k=int(top_k) if top_k else None)
    terms = [Term(adapter, weight) for adapter, weight, _ in chosen]
    explain = [((a.meta or {}).get("lang"), a, d, w) for a, w, d in chosen]
    if spec.get("language_adapters"):
        lt, ls = _number(spec.get("lambda_t", 1.0), "lambda_t"), _number(spec.get("lambda_s", 1.0), "lambda_s")
        terms.append(Term(_pick(library, "language", target), lt))
        for adapter, weight, _ in chosen:
            lang = (adapter.meta or {}).get("lang")
            if not _is(adapter, "task", target):
                terms.append(Term(_pick(library, "language", lang), -ls * weight))
    return terms, explain


def resolve_spec(spec: dict, root: Path) -> Resolved:
    """Explicit terms from a spec dict; relative paths are relative to ``root``."""
    check_keys(spec, spec_keys(), "composition spec")
    method, parameters = method_parameters(spec)
    scenario = spec.get("scenario")
    if scenario is None:
        terms = [term_from_dict(item, root) for item in spec.get("adapters") or []]
        return Resolved(terms, method, parameters)
    if scenario not in SCENARIOS:
        raise EdgecompError(f"unknown scenario '{scenario}' (choose from {', '.join(SCENARIOS)})")
    if spec.get("adapters"):
        raise EdgecompError("give either adapters or a scenario, not both")
    if not spec.get("target") or not spec.get("library"):
        raise EdgecompError(f"scenario '{scenario}' needs a target language and a library folder")
    from .languages import check_language

    for key in ("target", "source"):
        if spec.get(key):
            check_language(spec[key])
    library = load_library(root / str(spec["library"]))
    terms, explain = (_arithmetic if scenario == "arithmetic" else _related)(spec, library)
    return Resolved(terms, method, parameters, explain)


def load_spec_file(path: Path) -> tuple[dict, Path]:
    """A YAML spec and the folder its relative paths are relative to."""
    from ..data.yamlfile import read_yaml_mapping

    return read_yaml_mapping(path, "composition spec"), path.resolve().parent
