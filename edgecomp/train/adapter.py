"""Train one adapter end to end: data → examples → (NF4) base + LoRA → loop → PEFT folder + edgecomp.json.

The output is a standard PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``) that
``PeftModel.from_pretrained`` loads, plus ``metrics.jsonl`` (a line per step, :mod:`.metrics_log`)
and ``edgecomp.json``: what was trained, on which base (name and weight fingerprint), from which
data (name and sha256), and how it went; and ``vocabulary.json``, the token ids of its training
examples (:mod:`..data.vocabulary`), which the trimmed LM head of an export composed from it keeps.

Training saves a checkpoint every ``save_every`` steps and on Ctrl-C into ``<out>.checkpoint/``;
``resume`` continues from it to the same adapter an uninterrupted run writes (see :mod:`.checkpoint`).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from ..compose.languages import check_language
from ..console import console
from ..data.examples import language_blocks, sampled_labels, task_example
from ..data.prompts import DEFAULT_PROMPT, instruction
from ..data.readers import read_lines, read_pairs
from ..data.token_cache import cache_key, cached_examples, tokenizer_digest
from ..data.tokenizer import encoder
from ..data.vocabulary import VOCABULARY, vocabulary_payload
from ..errors import EdgecompError
from ..fsutil import atomic_dir, check_output_dir, sha256_file, write_json
from . import distributed
from .checkpoint import Checkpoints, check_start, latest_checkpoint
from .metrics_log import FILE as METRICS_FILE
from .metrics_log import TENSORBOARD_DIR, check_report_to

KINDS = ("language", "task")


@dataclass
class TrainOptions:
    kind: str
    lang: str
    data: Path
    out: Path
    base: str | None = None
    qlora: bool = False
    gradient_checkpointing: bool = False  # recompute each block's activations in backward: less memory, more time
    steps: int | None = None
    epochs: float = 1.0
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    lr: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    seq_len: int = 512
    max_summary_tokens: int = 64
    label_fraction: float = 1.0  # language: share of positions with a loss (random, seeded)
    prompt: str = DEFAULT_PROMPT  # task: the prompt's name (data.prompts.PROMPTS)
    seed: int = 0
    device: str = "auto"
    force: bool = False
    save_every: int | None = 50  # optimizer steps between checkpoints; 0 or None: only on Ctrl-C
    resume: bool = False
    report_to: str = "none"  # metrics_log.REPORT_TO: where the per-step metrics go besides metrics.jsonl
    allow_pickle: bool = False
    trust_remote_code: bool = False


# Options a resumed run may change: they do not decide the adapter, or only through what they
# resolve to (data → its sha256, base → its weights' fingerprint, steps/epochs → total steps…).
_FREE_ON_RESUME = (
    "data",
    "out",
    "force",
    "save_every",
    "resume",
    "allow_pickle",
    "trust_remote_code",
    "device",
    "gradient_checkpointing",
    "report_to",
    "base",
    "steps",
    "epochs",
)


def _validate(o: TrainOptions) -> None:
    """What the options decide together; each option's own range is checked by the command or
    recipe step that builds them (:mod:`edgecomp.options`)."""
    check_language(o.lang)
    instruction(o.prompt)
    distributed.check_split(o.batch_size, distributed.launched_size())
    if o.label_fraction < 1.0 and o.kind != "language":
        raise EdgecompError(
            "--label-fraction is for language adapters (task adapters take the loss on the summary only)"
        )
    check_report_to(o.report_to)
    check_output_dir(o.out, o.force)
    check_start(o.out, o.resume, o.force)


def read_data(o: TrainOptions) -> list:
    """Lines of text (language) or pairs (task), read and checked before any model is loaded."""
    return read_lines(o.data) if o.kind == "language" else read_pairs(o.data)


def build_examples(o: TrainOptions, records: list, tokenizer, bos_id, eos_id) -> list[tuple[list[int], list[int]]]:
    encode = encoder(tokenizer)
    if o.kind == "language":
        blocks = language_blocks(records, encode, bos_id, eos_id, o.seq_len)
        return [(b, sampled_labels(b, o.label_fraction, o.seed * 1_000_003 + n)) for n, b in enumerate(blocks)]
    max_summary = min(o.max_summary_tokens, o.seq_len // 2)
    tail = instruction(o.prompt)
    return [task_example(p, encode, bos_id, eos_id, o.seq_len, max_summary, tail) for p in records]


def examples_key(o: TrainOptions, tokenizer_folder: Path, data_sha256: str, bos_id, eos_id) -> str:
    """The token cache's key (:mod:`..data.token_cache`): what decides ``build_examples``' result."""
    shape = {"kind": o.kind, "seq_len": o.seq_len, "bos": bos_id, "eos": eos_id}
    if o.kind == "language":
        shape |= {"label_fraction": o.label_fraction, "seed": o.seed if o.label_fraction < 1.0 else None}
    else:
        shape |= {"max_summary_tokens": o.max_summary_tokens, "prompt": instruction(o.prompt)}
    return cache_key(tokenizer=tokenizer_digest(tokenizer_folder), data=data_sha256, **shape)


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def _fingerprint(o: TrainOptions, **resolved) -> dict:
    """What decides the trained adapter: the options, and what ``_FREE_ON_RESUME`` ones resolved to."""
    return {k: v for k, v in asdict(o).items() if k not in _FREE_ON_RESUME} | resolved


def _drop_metrics_only(checkpoints: Checkpoints, world) -> None:
    """After a failure: a checkpoint folder with metrics but no checkpoint resumes nothing; remove it."""
    if world.main and latest_checkpoint(checkpoints.folder) is None:
        checkpoints.remove()


def train_adapter(o: TrainOptions) -> dict:
    """Train and write the adapter folder ``o.out`` atomically; return its ``edgecomp.json``."""
    _validate(o)
    records = read_data(o)
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from ..data.tokenizer import load_tokenizer
    from ..model_folder import special_ids
    from ..models.fingerprint import weights_fingerprint
    from ..models.load import check_device, load_causal_lm
    from ..models.resolve import DEFAULT_BASE, resolve_base
    from .loop import total_steps, train_loop
    from .lora import lora_config

    device = check_device(o.device)
    base = resolve_base(o.base, allow_pickle=o.allow_pickle)
    tokenizer = load_tokenizer(base.path)
    console.print(f"[bold]base[/] {base.name} ({base.path})")
    model = load_causal_lm(
        base.path, qlora=o.qlora, device=device, allow_pickle=o.allow_pickle, trust_remote_code=o.trust_remote_code
    )
    ids = special_ids(base.path)
    bos_id, eos_id = ids.bos, (ids.eos[0] if ids.eos else None)
    gen = model.generation_config
    pad_id = _first(gen.pad_token_id if gen.pad_token_id is not None else model.config.pad_token_id)
    data_sha256 = sha256_file(o.data)
    examples, from_cache = cached_examples(
        examples_key(o, base.path, data_sha256, bos_id, eos_id),
        lambda: build_examples(o, records, tokenizer, bos_id, eos_id),
    )
    if not examples:
        raise EdgecompError(f"{o.data}: no training examples could be built")
    steps = total_steps(len(examples), o.batch_size, o.grad_accum, o.steps, o.epochs)
    base_fingerprint = weights_fingerprint(base.path)
    checkpoints = Checkpoints(
        o.out,
        _fingerprint(
            o, data_sha256=data_sha256, base=base_fingerprint, examples=len(examples), steps=steps, device=device
        ),
        o.save_every,
    )
    resume_from = checkpoints.check() if o.resume else None
    world = distributed.world(device)
    if not o.resume and world.main:
        checkpoints.remove()  # only there with --force: check_start refused it otherwise
    world.sum(0)  # every rank starts after that
    cached = " (tokens from the cache)" if from_cache else ""
    console.print(f"[bold]data[/] {o.data.name}: {len(examples)} examples{cached}, {steps} optimizer steps on {device}")

    if o.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if o.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(o.seed)
    model = get_peft_model(model, lora_config(model, o.rank, o.alpha, o.dropout))
    try:
        stats = train_loop(
            model,
            examples,
            steps=steps,
            batch_size=o.batch_size,
            grad_accum=o.grad_accum,
            lr=o.lr,
            seed=o.seed,
            pad_id=pad_id if pad_id is not None else 0,
            device=device,
            description=f"{o.kind} adapter ({o.lang})",
            checkpoints=checkpoints,
            resume_from=resume_from,
            metrics_file=checkpoints.folder / METRICS_FILE,
            report_to=o.report_to,
        )
    except BaseException:
        _drop_metrics_only(checkpoints, world)
        raise
    meta = {
        "format": "edgecomp-adapter/1",
        "edgecomp_version": __version__,
        "kind": o.kind,
        "lang": o.lang,
        "base": {"name": base.name, "spec": o.base or DEFAULT_BASE, "fingerprint": base_fingerprint},
        "quantization": "nf4" if o.qlora else "none",
        "steps": stats.steps,
        "final_loss": round(stats.final_loss, 6),
        "first_loss": round(stats.losses[0], 6),
        "tokens": stats.tokens,
        "tokens_per_s": round(stats.tokens_per_s, 2),
        "seconds": round(stats.seconds, 2),
        "data": {"file": o.data.name, "sha256": data_sha256, "examples": len(examples)},
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(o).items()
            if k not in ("data", "out", "force", "resume", "save_every")
        },
        "device": device,
        "processes": world.size,
    }
    if world.main:
        try:
            with atomic_dir(o.out, force=o.force) as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                write_json(tmp / "edgecomp.json", meta)
                size = tokenizer.get_vocab_size(with_added_tokens=True)  # what an export's trimmed head keeps
                write_json(tmp / VOCABULARY, vocabulary_payload({i for ids, _ in examples for i in ids}, size))
                shutil.copy2(checkpoints.folder / METRICS_FILE, tmp / METRICS_FILE)
                if (checkpoints.folder / TENSORBOARD_DIR).is_dir():
                    shutil.copytree(checkpoints.folder / TENSORBOARD_DIR, tmp / TENSORBOARD_DIR)
        except BaseException:
            _drop_metrics_only(checkpoints, world)
            raise
        checkpoints.remove()
    world.sum(0)  # the adapter is written before any rank returns
    return meta
