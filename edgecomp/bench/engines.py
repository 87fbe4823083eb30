"""The engines ``edgecomp bench`` times: edgecomp's ONNX runtime, PyTorch, llama.cpp.

Each engine loads its model, then times one run at a time: a prompt of exactly N tokens in one
prefill, then M tokens decoded greedily one by one, end-of-sequence ignored. Every engine builds
its prompt the same way from the same bundled text with its own tokenizer, so all see N tokens of
the same text. Heavy imports (torch, llama_cpp) happen in the engine's own process only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import EdgecompError
from ..model_folder import special_ids

# A few scripts and byte-fallback characters, repeated until the prompt is long enough.
BENCH_TEXT = (
    "The council approved a new budget for schools and roads on Monday, after a long debate about "
    "teachers' pay and the cost of repairing bridges damaged by the spring floods. "
    "Mvua kubwa imesababisha mafuriko katika mji mkuu wa nchi, na wafanyabiashara wamepoteza mali zao. "
    "La ville a approuvé un nouveau budget pour les écoles, 2024–2025, malgré l'opposition. "
    "सरकार ने स्कूलों के लिए नई योजना की घोषणा की। "
)


def bench_prompt(encode: Callable[[str], Sequence[int]], bos_id: int | None, tokens: int) -> list[int]:
    """``[bos] + BENCH_TEXT × k`` cut to exactly ``tokens`` ids."""
    if tokens < 1:
        raise EdgecompError(f"--prompt-tokens must be at least 1 (got {tokens})")
    head = [bos_id] if bos_id is not None else []
    once = list(encode(BENCH_TEXT))
    body = once * (tokens // max(1, len(once)) + 1)
    return (head + body)[:tokens]


def files_bytes(paths: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def onnx_files(model_dir: Path) -> list[Path]:
    """The export's graph and weight files: ``*.onnx`` and their external data."""
    return sorted(
        p for p in Path(model_dir).iterdir() if p.suffix in (".onnx", ".data") or p.name.endswith(".onnx_data")
    )


class Engine:
    """Load once (``load_s``), then ``run`` → (prefill seconds, decode seconds, decode steps)."""

    name = "engine"
    model_bytes = 0
    load_s = 0.0
    threads = 0

    def run(self, prompt_tokens: int, new_tokens: int) -> tuple[float, float, int]:
        raise NotImplementedError


class OnnxEngine(Engine):
    name = "edgecomp-onnx"

    def __init__(self, model: str, provider: str = "cpu", threads: int | None = None, spinning: bool | None = None):
        from ..runtime.model import OnnxCausalLM
        from ..runtime.session import physical_cores

        start = time.perf_counter()
        self.model = OnnxCausalLM.load(model, provider, threads=threads, spinning=spinning)
        self.load_s = time.perf_counter() - start
        self.model_bytes = files_bytes(onnx_files(Path(model)))
        self.threads = threads or physical_cores()
        self.detail = f"{provider}, logits_to_keep={'yes' if self.model.decoder.has_logits_to_keep else 'no'}"

    def run(self, prompt_tokens: int, new_tokens: int) -> tuple[float, float, int]:
        from ..runtime.decoding import Decoding
        from ..runtime.generate import generate

        prompt = bench_prompt(self.model.encode, self.model.bos_id, prompt_tokens)
        out = generate(self.model.decoder, prompt, Decoding(max_new_tokens=new_tokens))
        return out.prefill_s, out.decode_s, out.steps


class TorchEngine(Engine):
    """transformers in fp32 with a hand-written KV-cache loop (only the last position's logits)."""

    name = "pytorch"

    def __init__(self, checkpoint: str, provider: str = "cpu", threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        from ..data.tokenizer import encoder, load_tokenizer
        from ..runtime.session import physical_cores

        self.threads = threads or physical_cores()
        torch.set_num_threads(self.threads)
        self.torch = torch
        self.device = "cuda" if provider == "cuda" else "cpu"
        start = time.perf_counter()
        path = Path(checkpoint)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
        self.model = self.model.eval().to(self.device)
        self.load_s = time.perf_counter() - start
        self.encode = encoder(load_tokenizer(path))
        self.bos_id = special_ids(path).bos
        self.model_bytes = files_bytes(sorted(path.glob("*.safetensors")))
        self.detail = f"fp32, {self.device}"

    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def run(self, prompt_tokens: int, new_tokens: int) -> tuple[float, float, int]:
        torch = self.torch
        prompt = bench_prompt(self.encode, self.bos_id, prompt_tokens)
        with torch.inference_mode():
            ids = torch.tensor([prompt], device=self.device)
            start = time.perf_counter()
            out = self.model(ids, use_cache=True, logits_to_keep=1)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            self._sync()
            prefilled = time.perf_counter()
            past = out.past_key_values
            for _ in range(new_tokens - 1):
                out = self.model(token, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = out.logits[:, -1].argmax(-1, keepdim=True)
            self._sync()
            done = time.perf_counter()
        return prefilled - start, done - prefilled, new_tokens - 1


class LlamaCppEngine(Engine):
    """llama.cpp through llama-cpp-python's low-level calls: ``eval`` then greedy argmax of the
    last logits row, one token at a time (no sampler chain, no detokenization)."""

    name = "llama.cpp"

    def __init__(self, gguf: str, provider: str = "cpu", threads: int | None = None, n_ctx: int = 4096):
        import llama_cpp

        from ..runtime.session import physical_cores

        self.threads = threads or physical_cores()
        start = time.perf_counter()
        self.llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            n_gpu_layers=-1 if provider == "cuda" else 0,
            verbose=False,
        )
        self.load_s = time.perf_counter() - start
        self.model_bytes = Path(gguf).stat().st_size
        self.n_vocab = self.llm.n_vocab()
        self.detail = Path(gguf).name

    def _argmax(self) -> int:
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.n_vocab,))
        return int(logits.argmax())

    def run(self, prompt_tokens: int, new_tokens: int) -> tuple[float, float, int]:
        llm = self.llm
        bos = llm.token_bos()

        def encode(text: str) -> list[int]:
            return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

        prompt = bench_prompt(encode, bos if bos >= 0 else None, prompt_tokens)
        if prompt_tokens + new_tokens > llm.n_ctx():
            raise EdgecompError(f"prompt + new tokens exceed llama.cpp's context of {llm.n_ctx()}")
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        token = self._argmax()
        prefilled = time.perf_counter()
        for _ in range(new_tokens - 1):
            llm.eval([token])
            token = self._argmax()
        done = time.perf_counter()
        return prefilled - start, done - prefilled, new_tokens - 1


def make_engine(kind: str, **kwargs) -> Engine:
    return {"onnx": OnnxEngine, "torch": TorchEngine, "llama.cpp": LlamaCppEngine}[kind](**kwargs)
