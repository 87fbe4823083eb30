"""edgecomp's own ONNX graph for the decoder families of :mod:`edgecomp.models.families` (Llama,
Gemma3, Qwen2, Qwen3): optimum's graph, in fewer nodes.

Why: a small model's decode step on a CPU is bound by how many nodes run, not by the bytes of its
weights: optimum's traced graph is mostly shape arithmetic, per-layer mask and position plumbing
and ``repeat_kv`` copies, and each node costs a few microseconds of dispatch (benchmarks/RUNTIME.md
has the numbers). This graph is written from the config instead of traced, ~25 nodes a layer:

- masks (causal, left padding, Gemma3's sliding window) are built once per pass as an additive
  bias, and rotary cos/sin once per rotary base, not per layer;
- grouped-query attention broadcasts the shared K/V heads in a 5-D MatMul
  (``[B, kv, group, S, H] @ [B, kv, 1, H, T]``) instead of copying them per query head;
- reshapes use constant shapes (``0`` = keep that dimension), so there is no shape arithmetic;
- each residual Add rides in the next norm (SkipSimplifiedLayerNormalization);
- q/k/v and gate/up, which read the same input, are one MatMul each (then a Split): a decode
  step's matmuls are single rows, and small ones are dominated by their launch, not their bytes;
- the attention scale is folded into the query norm weight where the family has one (Gemma3, Qwen3);
- a projection's bias (Qwen2's q/k/v) is one Add after its (fused) MatMul.

How a family differs from Llama (norm offset, embedding scale, q/k norms, extra norms, biases,
sliding window, activation) is read from its :class:`~edgecomp.models.families.Family`; this module
has no branch on a model type.

With ``lora_inputs`` every linear layer also takes a low-rank update as run-time inputs,
``x @ W + (x @ a) @ b`` with ``a`` [in, R] and ``b`` [R, out] (a fused q/k/v or gate/up layer: its
parts' A's side by side and their B's block-diagonal), so one exported base serves any LoRA
composition without re-exporting (:mod:`edgecomp.runtime.adapter` builds the inputs). The inputs
are required, not initializers, so quantization leaves them alone; ``lora_layout.json`` says which
modules each pair stands for.

Inputs and outputs are optimum's ``text-generation-with-past`` names and layouts (plus
``position_ids``), and every MatMul weight is a constant initializer with optimum's node names
(``/model/layers.3/mlp/down_proj/MatMul``; the fused ones ``.../self_attn/qkv_proj/MatMul`` and
``.../mlp/gate_up_proj/MatMul``), so the runtime, quantizer, trimming, GPTQ and the
verification against PyTorch work on either graph unchanged. Architectures or options this module
does not know (:func:`unsupported`) are exported by optimum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import EdgecompError
from ..model_folder import read_config
from ..models.families import Family, family_for
from .onnx_io import save_model

OPSET = 18
VERSION = 1  # bumped whenever the graph written for a checkpoint changes (export caches key on it)
MASKED = float(np.finfo(np.float32).min)
PRODUCER = "edgecomp"  # the graph's producer_name: what later steps check before relying on its names
LORA_LAYOUT = "lora_layout.json"


def unsupported(config: dict) -> str | None:
    """Why this module cannot build ``config``'s graph (None: it can)."""
    family = family_for(config)
    if family is None:
        return f"model type {config.get('model_type')!r}"
    activation = config.get("hidden_activation") or config.get("hidden_act")
    if activation != family.activation:
        return f"activation {activation!r}"
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "biases in attention or MLP"
    scaling = config.get("rope_scaling") or {}
    if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        return f"rope scaling {scaling.get('rope_type', scaling.get('type'))!r}"
    if config.get("attn_logit_softcapping") or config.get("final_logit_softcapping"):
        return "logit soft-capping"
    if config.get("use_bidirectional_attention"):
        return "bidirectional attention"
    for key in family.unsupported_keys:
        if config.get(key):
            return f"{key}={config[key]!r}"
    return None


def attention_scale(family: Family, config: dict) -> float:
    """The factor on q·k: ``query_scale_key``'s value (else the head size) to the power -0.5."""
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return float(config.get(family.query_scale_key, dim) if family.query_scale_key else dim) ** -0.5


class _Graph:
    """Nodes and initializers being written; names are unique by construction."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._constants: dict[tuple, str] = {}

    def op(self, op_type: str, inputs: list[str], name: str, outputs: int = 1, domain: str = "", **attrs):
        names = [f"{name}/output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=name, domain=domain or None, **attrs))
        return names[0] if outputs == 1 else names

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def const(self, values, dtype=np.int64) -> str:
        array = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = f"/edgecomp/const_{len(self._constants)}"
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]


def _load_weights(checkpoint_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint's safetensors files as float32 numpy arrays."""
    from safetensors import safe_open

    files = sorted(checkpoint_dir.glob("*.safetensors"))
    if not files:
        raise EdgecompError(f"{checkpoint_dir} has no *.safetensors weights")
    weights = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                weights[key] = f.get_tensor(key).float().numpy()
    return weights


class _Builder:
    def __init__(self, config: dict, weights: dict[str, np.ndarray], lora_inputs: bool = False):
        self.c, self.w, self.g = config, weights, _Graph()
        self.lora = {} if lora_inputs else None  # input prefix -> {"parts", "in", "out"}
        self.family = family_for(config)
        self.hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads") or self.heads
        self.head_dim = config.get("head_dim") or self.hidden // self.heads
        self.layers = config["num_hidden_layers"]
        self.eps = float(config.get("rms_norm_eps", 1e-6))

    def tensor(self, name: str) -> np.ndarray:
        if name not in self.w:
            raise EdgecompError(f"the checkpoint has no tensor {name!r}")
        return self.w[name]

    def norm(self, x: str, weight_name: str, name: str, extra_scale: float = 1.0, skip: str | None = None):
        """RMSNorm (scale ``norm_offset + w``); ``extra_scale`` folds a following constant multiply in.

        With ``skip`` (the residual stream), one SkipSimplifiedLayerNormalization adds ``x`` to it
        first and returns (normalized, new residual stream): the residual Add costs no node."""
        weight, offset = self.tensor(weight_name), self.family.norm_offset
        gamma = self.g.weight(weight_name, (offset + weight if offset else weight) * extra_scale)
        if skip is None:
            return self.g.op("SimplifiedLayerNormalization", [x, gamma], name, axis=-1, epsilon=self.eps)
        out, total = f"{name}/output_0", f"{name}/residual"
        self.g.nodes.append(
            helper.make_node(
                "SkipSimplifiedLayerNormalization",
                [x, skip, gamma],
                [out, "", "", total],
                name=name,
                domain="com.microsoft",
                epsilon=self.eps,
            )
        )
        return out, total

    def linear(self, x: str, module: str, parts: tuple[str, ...] = ()) -> str | list[str]:
        """``x @ W.T`` for the checkpoint's ``{module}.weight`` [out, in] (stored [in, out]).

        With ``parts`` (sibling modules reading the same input, e.g. q/k/v), one MatMul by their
        weights side by side, split into one output per part: one weight read and one kernel
        launch instead of several small ones (a decode step's matmuls are a single row). Modules
        of the family's ``attention_biases`` add their bias (side by side, like the weights) after
        the MatMul."""
        prefix = module.rsplit(".", 1)[0]
        modules = [f"{prefix}.{part}" for part in parts] if parts else [module]
        matrices = [self.tensor(f"{name}.weight").T for name in modules]
        weight = self.g.weight(f"{module}.weight", np.concatenate(matrices, axis=1))
        node = "/" + module.replace(".", "/").replace("/layers/", "/layers.")
        out = self.g.op("MatMul", [x, weight], f"{node}/MatMul")
        if any(name.rsplit(".", 1)[1] in self.family.attention_biases for name in modules):
            bias = np.concatenate([self.tensor(f"{name}.bias") for name in modules])
            out = self.g.op("Add", [out, self.g.weight(f"{module}.bias", bias)], f"{node}/Add")
        if self.lora is not None:
            prefix_in = f"lora.{module}"
            self.lora[prefix_in] = {
                "parts": modules,
                "in": int(matrices[0].shape[0]),
                "out": [int(m.shape[1]) for m in matrices],
            }
            down = self.g.op("MatMul", [x, f"{prefix_in}.a"], f"{node}/lora_a")
            out = self.g.op(
                "Add", [out, self.g.op("MatMul", [down, f"{prefix_in}.b"], f"{node}/lora_b")], f"{node}/lora_add"
            )
        if not parts:
            return out
        sizes = self.g.const([m.shape[1] for m in matrices])
        return self.g.op("Split", [out, sizes], f"{node}/split", outputs=len(parts), axis=-1)

    # -- things computed once per pass --------------------------------------------------------

    def masks(self) -> dict[str, str]:
        """Additive attention biases [B, 1, 1, S, T] (0 or float32 min) per layer type."""
        g = self.g
        total = g.op("Gather", [g.op("Shape", ["attention_mask"], "/mask/shape"), g.const(1)], "/mask/total")
        new = g.op("Gather", [g.op("Shape", ["input_ids"], "/mask/ids_shape"), g.const(1)], "/mask/new")
        past = g.op("Sub", [total, new], "/mask/past")
        keys = g.op("Range", [g.const(0), total, g.const(1)], "/mask/keys")
        queries = g.op("Range", [past, total, g.const(1)], "/mask/queries")
        distance = g.op(
            "Sub",
            [
                g.op("Unsqueeze", [queries, g.const([1])], "/mask/q_col"),
                g.op("Unsqueeze", [keys, g.const([0])], "/mask/k_row"),
            ],
            "/mask/distance",
        )  # [S, T]: query position - key position
        causal = g.op("GreaterOrEqual", [distance, g.const(0)], "/mask/causal")
        real = g.op(
            "Unsqueeze",
            [g.op("Cast", ["attention_mask"], "/mask/real", to=TensorProto.BOOL), g.const([1, 2, 3])],
            "/mask/real_5d",
        )  # [B, 1, 1, 1, T]
        zero, masked = g.const(0.0, np.float32), g.const(MASKED, np.float32)

        def bias(allowed: str, kind: str) -> str:
            both = g.op("And", [allowed, real], f"/mask/{kind}/allowed")
            return g.op("Where", [both, zero, masked], f"/mask/{kind}/bias")

        out = {"full_attention": bias(causal, "full")}
        key = self.family.sliding_window_key
        window = self.c.get(key) if key else None
        if window:
            near = g.op("Less", [distance, g.const(int(window))], "/mask/near")
            out["sliding_attention"] = bias(g.op("And", [causal, near], "/mask/sliding"), "sliding")
        return out

    def rotary(self) -> dict[str, tuple[str, str, str]]:
        """(positions, cos, sin) per layer type for ONNX Runtime's RotaryEmbedding: the tables are
        computed for this pass's ``position_ids`` only ([B*S, H/2]) and indexed 0..B*S-1."""
        g = self.g
        bases = {"full_attention": float(self.c.get(self.family.rope_theta_key, 10000.0))}
        if self.family.local_rope_key:
            bases["sliding_attention"] = float(self.c.get(self.family.local_rope_key, 10000.0))
        positions = g.op(
            "Unsqueeze",
            [g.op("Cast", ["position_ids"], "/rotary/positions", to=TensorProto.FLOAT), g.const([2])],
            "/rotary/positions_3d",
        )  # [B, S, 1]
        count = g.op("Size", ["position_ids"], "/rotary/count")
        rows = g.op(
            "Reshape",
            [
                g.op("Range", [g.const(0), count, g.const(1)], "/rotary/rows"),
                g.op("Shape", ["position_ids"], "/rotary/shape"),
            ],
            "/rotary/row_ids",
        )  # [B, S]: row b*S+s of the tables below
        half = g.const([-1, self.head_dim // 2])
        out, done = {}, {}
        for kind, base in bases.items():
            if base in done:
                out[kind] = done[base]
                continue
            exponents = np.arange(0, self.head_dim, 2, dtype=np.int64).astype(np.float32) / self.head_dim
            inv_freq = (1.0 / (np.float32(base) ** exponents)).astype(np.float32)
            angles = g.op("Mul", [positions, g.const(inv_freq[None, None, :], np.float32)], f"/rotary/{kind}/angles")
            cos = g.op("Reshape", [g.op("Cos", [angles], f"/rotary/{kind}/cos_3d"), half], f"/rotary/{kind}/cos")
            sin = g.op("Reshape", [g.op("Sin", [angles], f"/rotary/{kind}/sin_3d"), half], f"/rotary/{kind}/sin")
            out[kind] = done[base] = (rows, cos, sin)
        return out

    def rotate(self, x: str, rotary: tuple[str, str, str], name: str) -> str:
        """HF's ``x * cos + rotate_half(x) * sin`` on [B, N, S, H] (halves, not interleaved)."""
        return self.g.op("RotaryEmbedding", [x, *rotary], name, domain="com.microsoft", interleaved=0)

    # -- one layer ----------------------------------------------------------------------------

    def attention(self, x: str, i: int, bias: str, cos_sin) -> str:
        g, p = self.g, f"model.layers.{i}.self_attn"
        name = f"/model/layers.{i}/self_attn"
        heads, kv, dim = self.heads, self.kv_heads, self.head_dim
        scale = attention_scale(self.family, self.c)

        q, k, v = self.linear(x, f"{p}.qkv_proj", self.family.fused["qkv_proj"])
        q = g.op("Reshape", [q, g.const([0, 0, heads, dim])], f"{name}/q_heads")
        k = g.op("Reshape", [k, g.const([0, 0, kv, dim])], f"{name}/k_heads")
        v = g.op("Reshape", [v, g.const([0, 0, kv, dim])], f"{name}/v_heads")
        if self.family.qk_norm:  # per-head RMSNorm; the attention scale rides on the query's
            q = self.norm(q, f"{p}.q_norm.weight", f"{name}/q_norm", extra_scale=scale)
            k = self.norm(k, f"{p}.k_norm.weight", f"{name}/k_norm")
        else:
            q = g.op("Mul", [q, g.const(scale, np.float32)], f"{name}/q_scale")
        q = g.op("Transpose", [q], f"{name}/q_bnsh", perm=[0, 2, 1, 3])
        k = g.op("Transpose", [k], f"{name}/k_bnsh", perm=[0, 2, 1, 3])
        v = g.op("Transpose", [v], f"{name}/v_bnsh", perm=[0, 2, 1, 3])
        q = self.rotate(q, cos_sin, f"{name}/q_rotary")
        k = self.rotate(k, cos_sin, f"{name}/k_rotary")

        present_k, present_v = f"present.{i}.key", f"present.{i}.value"
        g.nodes.append(
            helper.make_node("Concat", [f"past_key_values.{i}.key", k], [present_k], name=f"{name}/k_cache", axis=2)
        )
        g.nodes.append(
            helper.make_node("Concat", [f"past_key_values.{i}.value", v], [present_v], name=f"{name}/v_cache", axis=2)
        )

        q5 = g.op("Reshape", [q, g.const([0, kv, heads // kv, -1, dim])], f"{name}/q_groups")  # [B, kv, G, S, H]
        k5 = g.op("Unsqueeze", [present_k, g.const([2])], f"{name}/k_5d")
        v5 = g.op("Unsqueeze", [present_v, g.const([2])], f"{name}/v_5d")
        scores = g.op("FusedMatMul", [q5, k5], f"{name}/scores", domain="com.microsoft", transB=1)  # no K copy
        scores = g.op("Add", [scores, bias], f"{name}/masked")
        probs = g.op("Softmax", [scores], f"{name}/softmax", axis=-1)
        out = g.op("MatMul", [probs, v5], f"{name}/context")  # [B, kv, G, S, H]
        out = g.op("Reshape", [out, g.const([0, heads, -1, dim])], f"{name}/context_heads")
        out = g.op("Transpose", [out], f"{name}/context_bshd", perm=[0, 2, 1, 3])
        out = g.op("Reshape", [out, g.const([0, 0, heads * dim])], f"{name}/context_flat")
        return self.linear(out, f"{p}.o_proj")

    def mlp(self, x: str, i: int) -> str:
        g, p = self.g, f"model.layers.{i}.mlp"
        gate, up = self.linear(x, f"{p}.gate_up_proj", self.family.fused["gate_up_proj"])
        if self.family.activation_op == "FastGelu":
            act = g.op("FastGelu", [gate], f"/model/layers.{i}/mlp/act", domain="com.microsoft")
        else:  # SiLU
            act = g.op(
                "Mul", [gate, g.op("Sigmoid", [gate], f"/model/layers.{i}/mlp/sigmoid")], f"/model/layers.{i}/mlp/act"
            )
        return self.linear(g.op("Mul", [act, up], f"/model/layers.{i}/mlp/gated"), f"{p}.down_proj")

    def layer(self, x: str, h: str, i: int, masks, rotary) -> tuple[str, str]:
        """Layer ``i`` from its normalized input ``x`` and residual stream ``h``; returns the update
        still to be added to ``h`` (the next norm adds it) and ``h``."""
        p, name = f"model.layers.{i}", f"/model/layers.{i}"
        key = self.family.layer_types_key
        kind = ((self.c.get(key) if key else None) or ["full_attention"] * self.layers)[i]
        kind = kind if kind in masks else "full_attention"
        attn = self.attention(x, i, masks[kind], rotary[kind])
        if self.family.sandwich_norms:
            attn = self.norm(attn, f"{p}.post_attention_layernorm.weight", f"{name}/post_attention_norm")
            x, h = self.norm(attn, f"{p}.pre_feedforward_layernorm.weight", f"{name}/pre_mlp_norm", skip=h)
            mlp = self.norm(self.mlp(x, i), f"{p}.post_feedforward_layernorm.weight", f"{name}/post_mlp_norm")
        else:
            x, h = self.norm(attn, f"{p}.post_attention_layernorm.weight", f"{name}/pre_mlp_norm", skip=h)
            mlp = self.mlp(x, i)
        return mlp, h

    # -- the whole graph ----------------------------------------------------------------------

    def build(self) -> onnx.ModelProto:
        g, c = self.g, self.c
        table = g.weight("model.embed_tokens.weight", self.tensor("model.embed_tokens.weight"))
        h = g.op("Gather", [table, "input_ids"], "/model/embed_tokens/Gather")
        if self.family.embedding_scale:
            h = g.op("Mul", [h, g.const(np.float32(self.hidden**0.5), np.float32)], "/model/embed_tokens/scale")
        masks, rotary = self.masks(), self.rotary()
        x = self.norm(h, "model.layers.0.input_layernorm.weight", "/model/layers.0/input_norm")
        for i in range(self.layers):
            update, h = self.layer(x, h, i, masks, rotary)
            if i + 1 < self.layers:
                x, h = self.norm(
                    update, f"model.layers.{i + 1}.input_layernorm.weight", f"/model/layers.{i + 1}/input_norm", skip=h
                )
        h, _ = self.norm(update, "model.norm.weight", "/model/norm", skip=h)
        if c.get("tie_word_embeddings", True) and "lm_head.weight" not in self.w:
            head = g.op("Transpose", [table], "/lm_head/tied_weight", perm=[1, 0])
        else:
            head = g.weight("lm_head.weight", self.tensor("lm_head.weight").T)
        g.nodes.append(helper.make_node("MatMul", [h, head], ["logits"], name="/lm_head/MatMul"))

        float_, int64 = TensorProto.FLOAT, TensorProto.INT64
        kv_shape = ["batch_size", self.kv_heads, "past_sequence_length", self.head_dim]
        present_shape = ["batch_size", self.kv_heads, "total_sequence_length", self.head_dim]
        inputs = [
            helper.make_tensor_value_info("input_ids", int64, ["batch_size", "sequence_length"]),
            helper.make_tensor_value_info("attention_mask", int64, ["batch_size", "total_sequence_length"]),
            helper.make_tensor_value_info("position_ids", int64, ["batch_size", "sequence_length"]),
        ]
        outputs = [helper.make_tensor_value_info("logits", float_, ["batch_size", "sequence_length", c["vocab_size"]])]
        for i in range(self.layers):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", float_, kv_shape))
                outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", float_, present_shape))
        for n, (name, layout) in enumerate((self.lora or {}).items()):
            inputs.append(helper.make_tensor_value_info(f"{name}.a", float_, [layout["in"], f"lora_rank_{n}"]))
            inputs.append(helper.make_tensor_value_info(f"{name}.b", float_, [f"lora_rank_{n}", sum(layout["out"])]))
        graph = helper.make_graph(g.nodes, "edgecomp_decoder", inputs, outputs, g.initializers)
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
            producer_name=PRODUCER,
        )


def is_edgecomp_graph(model: onnx.ModelProto) -> bool:
    """Whether ``model`` was written here (weights named after checkpoint tensors), not by optimum."""
    return model.producer_name == PRODUCER


def build_decoder_graph(checkpoint_dir: Path, work_dir: Path, lora_inputs: bool = False) -> Path:
    """Write ``work_dir/model.onnx`` (+ config, + ``lora_layout.json`` with ``lora_inputs``) for the
    checkpoint; raise if :func:`unsupported`."""
    checkpoint_dir, work_dir = Path(checkpoint_dir), Path(work_dir)
    config = read_config(checkpoint_dir)
    reason = unsupported(config)
    if reason:
        raise EdgecompError(f"edgecomp's decoder graph does not support {reason}; use --graph optimum")
    builder = _Builder(config, _load_weights(checkpoint_dir), lora_inputs)
    model = builder.build()
    work_dir.mkdir(parents=True, exist_ok=True)
    if builder.lora is not None:
        (work_dir / LORA_LAYOUT).write_text(json.dumps(builder.lora, indent=1), encoding="utf-8")
    path = work_dir / "model.onnx"
    large = sum(t.ByteSize() for t in model.graph.initializer) > 1.8e9  # protobuf's 2 GB limit
    save_model(model, path, external=large)
    for name in ("config.json", "generation_config.json"):
        if (checkpoint_dir / name).is_file():
            (work_dir / name).write_bytes((checkpoint_dir / name).read_bytes())
    return path
