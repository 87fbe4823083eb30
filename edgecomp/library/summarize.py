"""Summaries without ``--model``: each document's language picks a library composition.

:class:`LibraryRouter` gives :func:`edgecomp.runtime.batch.summarize_documents` its two callbacks:
``route`` detects a document's language (or takes ``--lang``) and picks the library's composition
for it, ``load`` opens that composition's export (built into the cache on first use). One model is
kept open at a time, since documents are summarized group by group; by default that is one base
export for every language, whose run-time LoRA update is swapped per group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..console import console
from ..data.documents import Document
from ..errors import EdgecompError
from ..runtime.batch import Route
from ..runtime.model import OnnxCausalLM
from .catalog import Choice, Library
from .exports import base_export, merged_export


def describe(choice: Choice, lang: str, detected: bool) -> str:
    """One line: which language (and how it was known) and which composition summarizes it."""
    how = "detected" if detected else "from --lang"
    if choice.fallback_for:
        return (
            f"language: {choice.fallback_for} ({how}; not shipped, using {choice.lang}'s) · composition: {choice.label}"
        )
    return f"language: {lang} ({how}) · composition: {choice.label}"


@dataclass
class LibraryRouter:
    library: Library
    lang: str | None = None  # --lang: skip detection
    fallback: bool = False
    quantize: str = "int8"
    merge: bool = False  # one export per composition instead of one shared base export
    provider: str = "cpu"
    threads: int | None = None
    load_s: float = 0.0  # opening the last model (after any build)
    export: Path | None = None  # the export folder of the last model opened
    _open: tuple[str, OnnxCausalLM] | None = field(default=None, repr=False)
    _choices: dict = field(default_factory=dict, repr=False)
    _base: OnnxCausalLM | None = field(default=None, repr=False)
    _base_export: Path | None = field(default=None, repr=False)

    def choose(self, text: str) -> tuple[Choice, str, bool]:
        """(choice, language, whether it was detected) for a document's text."""
        detected = self.lang is None
        if detected:
            from ..data.language import detect_language

            lang = detect_language(text)
        else:
            lang = self.lang
        if lang not in self._choices:  # an unshipped language's message asks URIEL: once per language
            try:
                self._choices[lang] = self.library.choice(lang, fallback=self.fallback)
            except EdgecompError as e:
                self._choices[lang] = e
        choice = self._choices[lang]
        if isinstance(choice, EdgecompError):
            raise choice
        return choice, lang, detected

    def route(self, doc: Document) -> Route:
        choice, lang, _ = self.choose(doc.text or "")
        return Route(choice.lang, {"lang": lang, "composition": choice.label}, choice)

    def load(self, route: Route) -> OnnxCausalLM:
        if self._open is not None and self._open[0] == route.key:
            return self._open[1]
        self._open = None
        model = self.open(route.payload)
        self._open = (route.key, model)
        return model

    def open(self, choice: Choice) -> OnnxCausalLM:
        """The model for ``choice``: the shared base export with the composition fed at run time,
        or (``merge``) the composition's own export."""
        start = time.perf_counter()
        if self.merge:
            export, built_s = merged_export(self.library, choice, self.quantize)
            self._built(built_s, f"the {choice.lang} export", export)
            model = OnnxCausalLM.load(export, self.provider, threads=self.threads)
            self.export = export
        else:
            from ..runtime.adapter import delta_factors

            terms = choice.terms(self.library.root)  # a spec that needs merging fails before any build
            if self._base is None:
                export, built_s = base_export(self.library, self.quantize)
                self._built(built_s, "the base export (shared by every language)", export)
                self._base = OnnxCausalLM.load(export, self.provider, threads=self.threads)
                self._base_export = export
            model, self.export = self._base, self._base_export
            model.set_adapter(delta_factors(terms), choice.prompt(self.library.root))
        self.load_s = time.perf_counter() - start
        return model

    @staticmethod
    def _built(seconds: float | None, what: str, export) -> None:
        if seconds is not None:
            console.print(
                f"built {what} once into the cache ({seconds:.0f} s): {export}", highlight=False, soft_wrap=True
            )
