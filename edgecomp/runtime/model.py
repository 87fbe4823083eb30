"""An export folder opened for generation: the decoder session, the tokenizer and the special ids.

Reads only what ``edgecomp merge-export`` writes (``model.onnx``, ``config.json``,
``generation_config.json``, ``tokenizer.json``), with numpy, onnxruntime and tokenizers: no PyTorch,
so a device that runs summaries needs none of the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.prompts import INSTRUCTION, instruction
from ..data.tokenizer import encoder, load_tokenizer
from ..data.vocab_map import IdMap, load_id_map
from ..errors import EdgecompError
from ..model_folder import CONFIG, GENERATION_CONFIG, read_config, read_manifest, special_ids, verify_manifest
from .adapter import lora_feeds
from .session import DecoderSession, KVShape

REQUIRED_FILES = ("model.onnx", CONFIG, GENERATION_CONFIG, "tokenizer.json")


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
        written_as = read_manifest(model_dir).get("format", "onnx")
        if written_as != "onnx":
            raise EdgecompError(
                f"{model_dir} is a --format {written_as} export, which edgecomp's runtime does not run "
                "(it runs ONNX exports: merge-export --format onnx)"
            )
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            raise EdgecompError(
                f"{model_dir} is not an edgecomp export (missing {', '.join(missing)}); "
                "create one with `edgecomp merge-export`"
            )
        manifest = verify_manifest(model_dir)
        config = read_config(model_dir)
        if "max_position_embeddings" not in config:
            raise EdgecompError(f"{model_dir / CONFIG} lacks max_position_embeddings")
        # The session first: its load peaks while it repacks the weights, and gives back the pages it
        # no longer needs before the tokenizer's tables are built (a lower peak, benchmarks/RUNTIME.md).
        decoder = DecoderSession(
            model_dir / "model.onnx",
            KVShape.from_config(config),
            provider,
            threads=threads,
            spinning=spinning,
            prefill_chunk=prefill_chunk,
        )
        tokenizer = load_tokenizer(model_dir, quick=True)
        id_map = load_id_map(model_dir, tokenizer)  # None unless the export's vocabulary was trimmed
        ids = special_ids(model_dir, config)
        bos_id, eos_ids = ids.bos, ids.eos
        if id_map is not None:
            bos_id = None if bos_id is None else id_map.trimmed_special_ids([bos_id])[0]
            eos_ids = id_map.trimmed_special_ids(eos_ids)
        return cls(
            decoder=decoder,
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
