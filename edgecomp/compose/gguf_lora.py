"""``compose --format gguf-lora``: the composed adapter as a GGUF LoRA for llama.cpp and Ollama.

The layout is what llama.cpp's ``convert_lora_to_gguf.py`` writes and ``llama_adapter_lora_init``
reads: ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` (llama.cpp scales
by ``alpha / rank``, as PEFT does), and for each adapted weight ``<name>.weight.lora_a`` (PEFT's A,
``[rank, in]``) and ``<name>.weight.lora_b`` (B, ``[out, rank]``, in llama.cpp's row order: Llama's
q/k rows permuted like the weight's), named for the base GGUF's architecture. llama.cpp applies it
to the base GGUF the composition was made for (``llama-cli -m base.gguf --lora adapter.gguf``,
llama-cpp-python's ``lora_path``, Ollama's ``ADAPTER``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgecompError
from ..models import gguf_layout
from ..models.families import family_for

FILE = "adapter.gguf"


def write_gguf_lora(path: Path, low_rank: dict, scale: float, base_gguf: Path, config: dict) -> None:
    """``low_rank``: module → (A [r, in], B [out, r]) of one rank ``r``, as for the PEFT writer."""
    import gguf

    family = family_for(config)
    if family is None:
        raise EdgecompError(f"--format gguf-lora does not know model type {config.get('model_type')!r}")
    reader = gguf.GGUFReader(str(base_gguf))
    names = gguf_layout.tensor_names(reader, low_rank, config["num_hidden_layers"])
    stored = {t.name for t in reader.tensors}
    rank = next(iter(low_rank.values()))[0].shape[0]
    writer = gguf.GGUFWriter(str(path), gguf_layout.architecture(reader))
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(scale * rank))
    for module in sorted(low_rank):
        weight = f"{names.get(module)}.weight"
        if weight not in stored:
            raise EdgecompError(f"{module}: the base GGUF {base_gguf.name} has no tensor for it")
        a, b = (t.detach().float().numpy() for t in low_rank[module])
        writer.add_tensor(f"{weight}.lora_a", a.copy(order="C"))
        writer.add_tensor(f"{weight}.lora_b", gguf_layout.as_stored(weight, b, family, config, norm=False))
    gguf_layout.write(writer)
