"""An export folder opened for generation: the decoder session, the tokenizer and the special ids.

Reads only what ``edgecomp merge-export`` writes (``model.onnx``, ``config.json``,
``generation_config.json``, ``tokenizer.json``), with numpy, onnxruntime and tokenizers: no PyTorch,
so a device that runs summaries needs none of the training stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.prompts import INSTRUCTION, instruction
from ..data.tokenizer import encoder, load_tokenizer
from ..errors import EdgecompError
from ..export.trim import VOCAB_MAP, IdMap, load_id_map
from ..hashes import remembered_sha256
from .adapter import lora_feeds
from .session import DecoderSession, KVShape

REQUIRED_FILES = ("model.onnx", "config.json", "generation_config.json", "tokenizer.json")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EdgecompError(f"{path} is not valid JSON: {e}") from None


def _ids(value) -> tuple[int, ...]:
    """``eos_token_id`` may be one id, a list of ids or absent."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


MANIFEST = "edgecomp-export.json"


def verify_manifest(model_dir: Path) -> dict:
    """Every file the export's manifest lists exists with its recorded sha256; refuse the export otherwise.

    Exports travel between machines and people: a truncated download or a swapped ``model.onnx``
    must not be run as if it were what was verified at export time. Returns the manifest ({} for a
    plain optimum export, which has none).
    """
    if not (model_dir / MANIFEST).is_file():
        return {}  # a plain optimum export: nothing to check against
    manifest = _read_json(model_dir / MANIFEST)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise EdgecompError(f"{model_dir / MANIFEST}: no file list to verify the export against")
    for name, expected in sorted(files.items()):
        path = model_dir / name
        if Path(name).name != name or not path.is_file():
            raise EdgecompError(f"{model_dir}: '{name}' listed in {MANIFEST} is missing")
        if remembered_sha256(path) != expected:
            raise EdgecompError(f"{path}: does not match its sha256 in {MANIFEST} (corrupted or modified)")
    return manifest


@dataclass
class OnnxCausalLM:
    decoder: DecoderSession
    tokenizer: object  # tokenizers.Tokenizer, or data.spm_tokenizer.SpmTokenizer (same ids, opens faster)
    bos_id: int | None
    eos_ids: tuple[int, ...]
    max_positions: int
    id_map: IdMap | None = None
    instruction: str = INSTRUCTION  # what follows the article: the export's prompt (data.prompts)
    lora_layout: dict | None = None  # the export takes LoRA updates at run time (manifest's lora_inputs)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        provider: str = "cpu",
        *,
        threads: int | None = None,
        spinning: bool | None = None,
        prefill_chunk: int | None = None,
    ) -> "OnnxCausalLM":
        """Open an export; ``threads``, ``spinning`` and ``prefill_chunk`` go to
        :class:`~edgecomp.runtime.session.DecoderSession`."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise EdgecompError(f"model folder {model_dir} does not exist")
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            raise EdgecompError(
                f"{model_dir} is not an edgecomp export (missing {', '.join(missing)}); "
                "create one with `edgecomp merge-export`"
            )
        manifest = verify_manifest(model_dir)
        config = _read_json(model_dir / "config.json")
        generation = _read_json(model_dir / "generation_config.json")
        if "max_position_embeddings" not in config:
            raise EdgecompError(f"{model_dir / 'config.json'} lacks max_position_embeddings")
        trimmed = (model_dir / VOCAB_MAP).is_file()  # the id map reads the tokenizers vocabulary
        tokenizer = load_tokenizer(model_dir, quick=not trimmed)
        id_map = load_id_map(model_dir, tokenizer)  # None unless the export's vocabulary was trimmed
        bos_id = generation.get("bos_token_id", config.get("bos_token_id"))
        eos_ids = _ids(generation.get("eos_token_id", config.get("eos_token_id")))
        if id_map is not None:
            bos_id = None if bos_id is None else id_map.trimmed_special_ids([bos_id])[0]
            eos_ids = id_map.trimmed_special_ids(eos_ids)
        return cls(
            decoder=DecoderSession(
                model_dir / "model.onnx",
                KVShape.from_config(config),
                provider,
                threads=threads,
                spinning=spinning,
                prefill_chunk=prefill_chunk,
            ),
            tokenizer=tokenizer,
            bos_id=bos_id,
            eos_ids=eos_ids,
            max_positions=config["max_position_embeddings"],
            id_map=id_map,
            instruction=instruction(manifest.get("prompt")),
            lora_layout=manifest.get("lora_inputs"),
        )

    def set_adapter(self, factors: dict | None, prompt: str | None = None) -> None:
        """Summarize with the LoRA update ``factors`` (:func:`.adapter.delta_factors`) applied at
        run time, and the prompt its task adapter was trained with; None: the base export alone.
        Switching costs one small copy: the session, weights and tokenizer stay loaded."""
        if self.lora_layout is None:
            raise EdgecompError("this export takes no run-time adapter (export it with lora_inputs)")
        self.decoder.set_adapter(None if factors is None else lora_feeds(self.lora_layout, factors))
        self.instruction = instruction(prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids the graph takes: the tokenizer's, mapped into a trimmed vocabulary if any."""
        ids = encoder(self.tokenizer)(text)
        return self.id_map.to_trimmed_ids(ids) if self.id_map is not None else ids

    def decode(self, ids: list[int]) -> str:
        if self.id_map is not None:
            ids = self.id_map.to_original_ids(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @property
    def pad_id(self) -> int:
        return self.eos_ids[0] if self.eos_ids else 0
