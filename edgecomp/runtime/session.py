"""One ONNX decoder graph behind a small interface: run tokens, get logits and a longer cache.

The graph is what optimum exports for ``text-generation-with-past``: inputs ``input_ids``,
``attention_mask``, sometimes ``position_ids`` (Llama has them, Gemma3 derives positions from the
cache length) and ``past_key_values.{i}.key/value``; outputs ``logits`` and ``present.{i}.key/value``.
A graph patched by :func:`edgecomp.export.logits_to_keep.add_logits_to_keep` also takes
``logits_to_keep`` (0: every position, k: the last k), so a prompt costs one lm_head row, not one
per token. Everything that knows those names, and how the cache is stored, lives here.

The loop runs through IO binding: the KV cache stays in ONNX Runtime's own tensors (``OrtValue``)
on the provider's device, each pass's ``present`` outputs are bound as the next pass's ``past``
inputs as they are (no numpy round trip, no host copy on CUDA), and only the logits come back to
numpy. Batches are left-padded: the cache carries each row's attention mask. A graph with
run-time LoRA inputs (``lora.*``, :mod:`.adapter`) gets the update set by :meth:`DecoderSession.set_adapter`
(zeros until then) bound on every pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from ..data.vocab_map import EXTRA_IDS, HEAD_IDS, read_head_ids
from ..errors import EdgecompError, first_line
from .adapter import zero_feeds
from .resident import release_clean_pages

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
DEVICES = {"cpu": "cpu", "cuda": "cuda"}

# Positions (batch rows × tokens) per prefill pass when the graph returns logits for every position:
# with a 262k vocabulary one pass over 2,048 tokens would hold 2 GiB of logits at once. A graph
# with ``logits_to_keep`` returns one row per sequence, so its prompts run in one pass up to
# PREFILL_CHUNK_LAST_ONLY positions (the attention scores are the largest tensor left).
PREFILL_CHUNK = 256
PREFILL_CHUNK_LAST_ONLY = 4096


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-thread siblings count once)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                ((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip())
            )
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


@dataclass(frozen=True)
class KVShape:
    """What an empty cache looks like: per layer one key and one value [batch, heads, 0, head_dim]."""

    num_layers: int
    num_kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config: dict) -> "KVShape":
        try:
            head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
            return cls(
                num_layers=config["num_hidden_layers"],
                num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                head_dim=head_dim,
            )
        except KeyError as e:
            raise EdgecompError(f"config.json lacks {e.args[0]!r}; is this a causal-LM config?") from None


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer, in input order (key 0, value 0, key 1, ...), rows = sequences.

    ``tensors`` are OrtValues on ``device``; ``mask`` [batch, length] (int64) is 1 for real tokens
    and 0 for left padding.
    """

    tensors: tuple[ort.OrtValue, ...]
    mask: np.ndarray
    device: str = "cpu"

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    @property
    def batch(self) -> int:
        return self.mask.shape[0]

    def numpy(self) -> tuple[np.ndarray, ...]:
        return tuple(t.numpy() for t in self.tensors)

    def select(self, rows: Sequence[int] | np.ndarray) -> "KVCache":
        """The cache of the given rows, in that order (beam search reorders and widens with this;
        batches drop finished rows). Goes through host memory: fine on CPU, a copy on CUDA."""
        rows = np.asarray(rows, dtype=np.int64)
        tensors = tuple(
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(t.numpy()[rows]), self.device, 0)
            for t in self.tensors
        )
        return KVCache(tensors, self.mask[rows], self.device)


def session_options(threads: int | None = None, spinning: bool | None = None) -> ort.SessionOptions:
    """The options measured to matter on CPU (see ``benchmarks/RUNTIME.md``).

    ``threads``: intra-op threads, default the physical cores we may run on (ONNX Runtime's own
    default counts the machine's cores, not the ones a container or ``taskset`` grants).
    ``spinning``: let idle pool threads spin between ops (default on: faster on a quiet machine;
    turn off when other processes share the cores, or to save power).
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise to a user
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads if threads else physical_cores()
    options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def input_names(session: ort.InferenceSession) -> set[str]:
    """Every input a session takes: the required ones and those with a default (an initializer of
    the same name, as ``logits_to_keep``), which ``get_inputs()`` leaves out."""
    return {i.name for i in session.get_inputs()} | {i.name for i in session.get_overridable_initializers()}


def check_provider(provider: str) -> str:
    """The ONNX Runtime provider name for ``provider``, or a message saying why it cannot be had."""
    if provider not in PROVIDERS:
        raise EdgecompError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[provider]
    if wanted not in ort.get_available_providers():
        raise EdgecompError(
            f"ONNX Runtime here has no {wanted} (available: {', '.join(ort.get_available_providers())}); "
            "for cuda install onnxruntime-gpu (pip install 'edgecomp[gpu]')"
        )
    return wanted


def create_session(
    model_path: Path, provider: str, *, threads: int | None = None, spinning: bool | None = None
) -> ort.InferenceSession:
    """An InferenceSession on the named provider, or a message saying why it cannot be had."""
    wanted = check_provider(provider)
    if provider == "cuda" and hasattr(ort, "preload_dlls"):
        # CUDA/cuDNN from NVIDIA's pip wheels (``onnxruntime-gpu[cuda,cudnn]``, or PyTorch's) are
        # not on the loader's path; ONNX Runtime >= 1.21 can load them itself.
        try:
            ort.preload_dlls(msvc=False)
        except Exception:  # nothing to preload: the system's CUDA libraries will do, or the check below says
            pass
    fallback = ["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else []
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    damaged = (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail, ort_errors.NoSuchFile)
    try:
        session = ort.InferenceSession(
            str(model_path), session_options(threads, spinning), providers=[wanted, *fallback]
        )
    except damaged as e:
        raise EdgecompError(f"{model_path}: ONNX Runtime cannot load it ({first_line(e)})") from None
    # ONNX Runtime falls back to CPU with only a log line when the CUDA libraries fail to load.
    if session.get_providers()[0] != wanted:
        raise EdgecompError(f"{wanted} could not be initialised (missing CUDA/cuDNN libraries?)")
    release_clean_pages(Path(model_path).parent)  # weights the load repacked and no longer reads
    return session


class HeadIds:
    """The id lists of a head-trimmed export (:mod:`edgecomp.export.trim_head`): its head scores the
    kept ids, then ``extra``, the ids the current prompts hold outside them; the graph's
    ``input_ids`` index that same list. Callers keep the vocabulary's own ids: inputs are mapped
    here, and logits come back over the whole vocabulary, -inf where the head has no row."""

    def __init__(self, kept: np.ndarray, vocab_size: int):
        self.kept, self.vocab_size = kept, vocab_size
        self.index = np.full(vocab_size, -1, dtype=np.int64)
        self.index[kept] = np.arange(kept.size)
        self.extra = np.zeros(0, dtype=np.int64)

    @classmethod
    def of(cls, folder: Path, inputs: set[str]) -> "HeadIds | None":
        found = read_head_ids(folder)
        if found is None:
            return None
        if EXTRA_IDS not in inputs:
            raise EdgecompError(f"{folder} has {HEAD_IDS} but its graph takes no {EXTRA_IDS} input")
        return cls(*found)

    def indices(self, ids: np.ndarray, fresh: bool) -> np.ndarray:
        """``ids`` as the graph's indices; ids outside the head join ``extra`` (emptied when a new
        sequence starts, kept while it goes on: its prompt's tokens stay writable)."""
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise EdgecompError(f"token ids must lie in [0, {self.vocab_size})")
        if fresh:
            self.extra = np.zeros(0, dtype=np.int64)
        mapped = self.index[ids]
        missing = mapped < 0
        if missing.any():
            self.extra = np.union1d(self.extra, ids[missing])
            mapped[missing] = self.kept.size + np.searchsorted(self.extra, ids[missing])
        return mapped

    def full_logits(self, logits: np.ndarray) -> np.ndarray:
        """[..., kept + extra] → [..., vocabulary], -inf where the head has no row."""
        full = np.full((*logits.shape[:-1], self.vocab_size), -np.inf, dtype=logits.dtype)
        full[..., self.kept] = logits[..., : self.kept.size]
        full[..., self.extra] = logits[..., self.kept.size :]
        return full


class DecoderSession:
    """Runs a decoder-with-past graph; batch rows are sequences of equal (padded) length."""

    def __init__(
        self,
        model_path: Path,
        shape: KVShape,
        provider: str = "cpu",
        *,
        threads: int | None = None,
        spinning: bool | None = None,
        prefill_chunk: int | None = None,
    ):
        self.session = create_session(model_path, provider, threads=threads, spinning=spinning)
        self.shape = shape
        self.device = DEVICES[provider]
        inputs = input_names(self.session)
        self.past_names = [f"past_key_values.{i}.{kind}" for i in range(shape.num_layers) for kind in ("key", "value")]
        missing = {"input_ids", "attention_mask", *self.past_names} - inputs
        if missing:
            raise EdgecompError(
                f"{model_path} is not a decoder-with-past graph matching config.json "
                f"(missing inputs: {', '.join(sorted(missing))})"
            )
        self.has_position_ids = "position_ids" in inputs
        self.has_logits_to_keep = "logits_to_keep" in inputs
        self._keep = {
            last: ort.OrtValue.ortvalue_from_numpy(np.array(int(last), dtype=np.int64)) for last in (False, True)
        }
        self.present_names = [n.replace("past_key_values", "present") for n in self.past_names]
        self.prefill_chunk = prefill_chunk or (PREFILL_CHUNK_LAST_ONLY if self.has_logits_to_keep else PREFILL_CHUNK)
        self.head = HeadIds.of(Path(model_path).parent, inputs)
        self._binding = self.session.io_binding()
        self._zero_adapter = zero_feeds(self.session.get_inputs())
        self.set_adapter(None)

    @property
    def takes_adapter(self) -> bool:
        """Whether the graph takes LoRA updates at run time."""
        return bool(self._zero_adapter)

    def set_adapter(self, feeds: dict[str, np.ndarray] | None) -> None:
        """Use the run-time LoRA update ``feeds`` (:func:`.adapter.lora_feeds`) from now on; None: none."""
        feeds = self._zero_adapter if feeds is None else feeds
        if set(feeds) != set(self._zero_adapter):
            raise EdgecompError(
                "the adapter update does not match the graph's LoRA inputs"
                if self._zero_adapter
                else "this export takes no run-time adapter"
            )
        self._adapter = [
            (name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value, dtype=np.float32), self.device, 0))
            for name, value in feeds.items()
        ]

    def empty_cache(self, batch: int = 1) -> KVCache:
        s = self.shape
        empty = np.zeros((batch, s.num_kv_heads, 0, s.head_dim), dtype=np.float32)
        tensors = tuple(ort.OrtValue.ortvalue_from_numpy(empty, self.device, 0) for _ in self.past_names)
        return KVCache(tensors, np.zeros((batch, 0), dtype=np.int64), self.device)

    def run(
        self,
        input_ids: np.ndarray,
        cache: KVCache,
        mask: np.ndarray | None = None,
        *,
        last_only: bool = False,
    ) -> tuple[np.ndarray, KVCache]:
        """Logits for ``input_ids`` [batch, tokens] after ``cache``: [batch, tokens, vocab], or
        [batch, 1, vocab] with ``last_only`` when the graph can (else every position comes back).

        ``mask`` [batch, tokens] marks the new tokens that are padding (0); default all ones.
        """
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        batch, new = input_ids.shape
        if self.head is not None:
            input_ids = self.head.indices(input_ids, fresh=cache.length == 0)
            self._binding.bind_cpu_input(EXTRA_IDS, self.head.extra)
        if mask is None:
            mask = np.ones((batch, new), dtype=np.int64)
        full_mask = np.concatenate([cache.mask, mask.astype(np.int64, copy=False)], axis=1)
        binding = self._binding
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input("attention_mask", full_mask)
        if self.has_position_ids:
            # Padding does not advance positions: row r's token j sits at (real tokens before it).
            positions = np.maximum(full_mask.cumsum(axis=1) - 1, 0)[:, cache.length :]
            binding.bind_cpu_input("position_ids", np.ascontiguousarray(positions))
        if self.has_logits_to_keep:  # an input with a default: ONNX Runtime binds it as an OrtValue only
            binding.bind_ortvalue_input("logits_to_keep", self._keep[last_only])
        for name, value in zip(self.past_names, cache.tensors):
            binding.bind_ortvalue_input(name, value)
        for name, value in self._adapter:
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.present_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        logits, *present = binding.get_outputs()
        binding.clear_binding_outputs()
        binding.clear_binding_inputs()  # do not keep the past cache alive after the pass
        logits = logits.numpy() if self.head is None else self.head.full_logits(logits.numpy())
        return logits, KVCache(tuple(present), full_mask, self.device)

    def prefill(self, ids: Sequence[int]) -> tuple[np.ndarray, KVCache]:
        """Run a prompt (one sequence); return the last position's logits [1, vocab] and the cache."""
        logits, cache = self.prefill_batch([list(ids)])
        return logits, cache

    def prefill_batch(self, prompts: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, KVCache]:
        """Run prompts left-padded to one length; return each row's last logits [batch, vocab] and
        the cache. Passes hold at most ``prefill_chunk`` positions (rows × tokens) each."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise EdgecompError("cannot prefill an empty prompt")
        batch, longest = len(prompts), max(len(p) for p in prompts)
        ids = np.full((batch, longest), pad_id, dtype=np.int64)
        mask = np.zeros((batch, longest), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt) :] = prompt
            mask[row, longest - len(prompt) :] = 1
        cache = self.empty_cache(batch)
        step = max(1, self.prefill_chunk // batch)
        for start in range(0, longest, step):
            end = min(longest, start + step)
            # Only the last pass's logits are used; earlier passes need none (one row with logits_to_keep).
            logits, cache = self.run(ids[:, start:end], cache, mask[:, start:end], last_only=True)
        return np.ascontiguousarray(logits[:, -1]), cache

    def step(self, tokens: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
        """One new token per row: ``tokens`` [batch] → logits [batch, vocab]."""
        logits, cache = self.run(np.asarray(tokens, dtype=np.int64)[:, None], cache, last_only=True)
        return logits[:, -1], cache
