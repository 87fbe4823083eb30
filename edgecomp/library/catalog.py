"""An adapter library's ``library.json``: which composition summarizes which language.

A library is a folder of adapters plus ``library.json``::

    {"format": "edgecomp-library/1", "base": "gemma-3-270m",
     "languages": {"vi": {"label": "task_en + lang_vi − lang_en",
                          "spec": {"adapters": ["task-en:1", "lang-vi:1", "lang-en:-1"], "method": "delta"}},
                   ...}}

Each ``spec`` is a composition spec (as ``edgecomp compose --spec`` reads) whose paths are relative
to the folder. The choices are measurements, not rules (benchmarks/LIBRARY.md and docs/results.md
say which composition won per language), so they live in the data. Reading a library needs no
PyTorch; only building an export does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..compose.spec import spec_keys
from ..data.yamlfile import check_keys
from ..errors import EdgecompError
from ..model_folder import read_json

FORMAT = "edgecomp-library/1"
INDEX = "library.json"
SHIPPED = Path(__file__).parent / "adapters"


@dataclass(frozen=True)
class Choice:
    """The composition a library uses for one language."""

    lang: str
    label: str
    spec: dict
    fallback_for: str | None = None  # set when used for another, unshipped language (--fallback)

    def terms(self, root: Path) -> list[tuple[Path, float]]:
        """(adapter folder, weight) of a spec that lists adapters summed exactly (``delta``, or one
        adapter), as run-time composition takes them; other specs need a merged export."""
        items = self.spec.get("adapters") or []
        if (
            not items
            or set(self.spec) - {"adapters", "method"}
            or (len(items) > 1 and self.spec.get("method") != "delta")
        ):
            raise EdgecompError(
                f"{self.label}: only a list of adapters summed with 'delta' is applied at run time; "
                "pass --merge to export this composition"
            )
        terms = []
        for item in items:
            path, _, weight = str(item).partition(":")
            try:
                terms.append((root / path, float(weight or 1.0)))
            except ValueError:
                raise EdgecompError(
                    f"{self.label}: '{item}' is not PATH[:WEIGHT]; pass --merge for per-module weights"
                ) from None
        return terms

    def prompt(self, root: Path) -> str | None:
        """The prompt of the choice's task adapter (from its ``edgecomp.json``), None if it names none."""
        for path, _ in self.terms(root):
            try:
                meta = json.loads((path / "edgecomp.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("kind") == "task":
                return (meta.get("options") or {}).get("prompt")
        return None


@dataclass(frozen=True)
class Library:
    root: Path
    index: dict

    @classmethod
    def load(cls, root: str | Path | None = None) -> "Library":
        root = Path(root) if root is not None else SHIPPED
        path = root / INDEX
        if not path.is_file():
            raise EdgecompError(f"{root}: not an adapter library (no {INDEX})")
        index = read_json(path)
        if index.get("format") != FORMAT or not isinstance(index.get("languages"), dict):
            raise EdgecompError(f"{path}: not an adapter library index ({FORMAT})")
        for lang, entry in index["languages"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("spec"), dict) or not entry.get("label"):
                raise EdgecompError(f"{path}: language '{lang}' needs a 'label' and a 'spec'")
            check_keys(entry["spec"], spec_keys(), f"{path}: language '{lang}' spec")
        return cls(root, index)

    @property
    def languages(self) -> list[str]:
        return sorted(self.index["languages"])

    @property
    def base(self) -> str | None:
        return self.index.get("base")

    def choice(self, lang: str, *, fallback: bool = False) -> Choice:
        """The composition for ``lang``; for a language the library lacks, the closest one's if
        ``fallback``, else an error naming the closest languages and how to train an adapter."""
        entry = self.index["languages"].get(lang)
        if entry is not None:
            return Choice(lang, entry["label"], entry["spec"])
        closest = self.closest(lang)
        if fallback and closest:
            near = closest[0][0]
            entry = self.index["languages"][near]
            return Choice(near, entry["label"], entry["spec"], fallback_for=lang)
        names = ", ".join(f"{code} ({distance:.2f})" for code, distance in closest) or "none known to URIEL"
        raise EdgecompError(
            f"no shipped adapter for '{lang}' (shipped: {', '.join(self.languages)}); closest by URIEL: {names}. "
            f"Train one with `edgecomp train --kind language --lang {lang} --data {lang}.txt "
            f"--out lang-{lang} --qlora`, "
            f"or pass --fallback to summarize with the closest language's composition"
        )

    def closest(self, lang: str, k: int = 3) -> list[tuple[str, float]]:
        """Up to ``k`` shipped languages nearest to ``lang`` by URIEL's combined distance."""
        from ..compose.related import language_distances

        try:
            distances = language_distances(lang, self.languages)
        except EdgecompError:
            return []
        ranked = sorted((row["combined"], code) for code, row in distances.items())
        return [(code, distance) for distance, code in ranked[:k]]

    def file_hashes(self, choice: Choice) -> dict[str, str]:
        """sha256 of each file in :meth:`files`, by its path in the library (remembered by mtime)."""
        from ..hashes import remembered_sha256

        return {str(p.relative_to(self.root)): remembered_sha256(p) for p in self.files(choice)}

    def files(self, choice: Choice) -> list[Path]:
        """Every file the choice's export depends on: the index and its adapters' weights, configs and
        vocabularies (a merged export of one language is trimmed to them)."""
        from ..data.vocabulary import VOCABULARY

        adapters = [self.root / str(item).split(":", 1)[0] for item in choice.spec.get("adapters") or []]
        names = ("adapter_config.json", "adapter_model.safetensors", VOCABULARY)
        return [self.root / INDEX] + [a / f for a in adapters for f in names if (a / f).is_file()]
