"""A quantized edgecomp decoder graph read back into PyTorch, its 4-bit scales trainable.

:mod:`edgecomp.export.quantization.scale_tuning` trains the 4-bit blocks' scales by gradient descent, which ONNX
Runtime cannot do; this builds the transformers model of the export's ``config.json`` (eager
attention) and fills it from the quantized graph. That works because edgecomp's decoder graph
(:mod:`edgecomp.export.decoder_graph`) names every weight after the checkpoint tensor it came from
(``model.layers.0.self_attn.qkv_proj.weight_Q4`` holds q/k/v's rows in that order, ``gate_up_proj``
gate's then up's, ``qkv_proj.bias`` their biases where the family has them) and folds only constants
the model's :class:`~edgecomp.models.families.Family` names into the norms: its norm offset
(Gemma's ``1 + w``) and, where it has q/k norms, the attention scale in ``q_norm``. Optimum's graphs
carry no such names, so they are never tuned.

The 4-bit MatMuls become :class:`BlockLinear` (``(code - zero) · scale · exp(gain)``, the gain
trainable); everything else (8-bit MatMuls, the 8-bit tied embedding / head, the smoothing that
:mod:`edgecomp.export.quantization.smoothing` folded into the table) is dequantized once and frozen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ...model_folder import read_config
from ...models.families import family_for
from ..decoder_graph import attention_scale
from .codec import centered_codes, dequantize_blocks, pack_nibbles


class BlockLinear(torch.nn.Module):
    """``x @ Wᵀ (+ bias)`` with ``W = (code - zero) · scale · exp(gain)`` per block (``gain``
    trainable): MatMulNBits' asymmetric 4-bit blocks, the codes fixed, the scales free; the bias
    (the replaced layer's own, frozen) is the graph's Add after the MatMul."""

    def __init__(self, centered: torch.Tensor, scales: torch.Tensor, bias: torch.nn.Parameter | None = None):
        super().__init__()
        self.register_buffer("centered", centered)  # [N, blocks, block]: code - zero
        self.register_buffer("base", scales)  # [N, blocks]
        self.gain = torch.nn.Parameter(torch.zeros_like(scales))
        self.bias = bias

    def scales(self) -> torch.Tensor:
        return self.base * self.gain.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.centered * self.scales()[..., None]).reshape(len(self.centered), -1)
        out = x @ weight[:, : x.shape[-1]].T
        return out if self.bias is None else out + self.bias


def _attributes(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class QuantizedStudent:
    """The transformers model of ``config_dir`` carrying ``model``'s (quantized) weights."""

    def __init__(self, model: onnx.ModelProto, config_dir: Path):
        from transformers import AutoConfig, AutoModelForCausalLM

        self.config = AutoConfig.from_pretrained(config_dir)
        self.config_json = read_config(config_dir)  # the graph's
        self.family = family_for(self.config_json)
        self.net = AutoModelForCausalLM.from_config(self.config, attn_implementation="eager", dtype=torch.float32)
        self.net.requires_grad_(False)
        self.inits = {t.name: t for t in model.graph.initializer}
        self.layers: dict[str, list[BlockLinear]] = {}  # scales initializer → its BlockLinears, row order
        producers = {out: node for node in model.graph.node for out in node.output}
        head = producers["logits"]
        params = dict(self.net.named_parameters())
        self.modules = dict(self.net.named_modules())
        for node in model.graph.node:
            if node is head:
                continue
            if node.op_type == "MatMulNBits":
                self._load_nbits(node, params)
            elif node.op_type == "MatMul" and node.input[1] in self.inits:
                self._set_rows(params, node.input[1].removesuffix(".weight"), self._array(node.input[1]).T)
        for name in self.inits:
            if name.endswith(".bias"):
                self._set_rows(params, name.removesuffix(".bias"), self._array(name).copy(), "bias")
        offset = self.family.norm_offset
        self.norms: dict[str, tuple[torch.nn.Parameter, float]] = {}
        for name, param in params.items():
            if name.endswith("norm.weight") and name in self.inits:
                extra = self._norm_constant(name)
                gamma = torch.tensor(self._array(name)) / extra
                param.data.copy_(gamma - offset if offset else gamma)
                self.norms[name] = (param, extra)
        self.head = torch.from_numpy(np.ascontiguousarray(self._head_matrix(head, producers)))  # [V, H]
        embedding = self.net.get_input_embeddings()
        embedding.weight = torch.nn.Parameter(torch.from_numpy(self._embedding(model, producers)), requires_grad=False)

    def _array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.inits[name])

    def _dequantized(self, node) -> np.ndarray:
        attrs = _attributes(node)
        zero_points = self._array(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        weight = dequantize_blocks(self._array(node.input[1]), self._array(node.input[2]), zero_points, attrs["bits"])
        return weight[:, : attrs["K"]]

    def _load_nbits(self, node, params) -> None:
        prefix = node.input[1].rsplit("_Q", 1)[0].removesuffix(".weight")
        has_zeros = len(node.input) > 3 and bool(node.input[3])
        if _attributes(node)["bits"] != 4 or not has_zeros:
            self._set_rows(params, prefix, self._dequantized(node))
            return
        centered = torch.from_numpy(centered_codes(self._array(node.input[1]), self._array(node.input[3]), 4))
        scales = torch.from_numpy(self._array(node.input[2]).copy())
        layers, start = [], 0
        for path, count in self._rows(prefix):
            layer = BlockLinear(centered[start : start + count], scales[start : start + count], self.modules[path].bias)
            parent, leaf = path.rsplit(".", 1)
            setattr(self.modules[parent], leaf, layer)
            layers.append(layer)
            start += count
        self.layers[node.input[2]] = layers

    def _rows(self, prefix: str) -> list[tuple[str, int]]:
        """(module path, output rows) of each checkpoint linear a (possibly fused) weight holds."""
        module, leaf = prefix.rsplit(".", 1)
        paths = [f"{module}.{part}" for part in self.family.fused[leaf]] if leaf in self.family.fused else [prefix]
        return [(path, self.modules[path].out_features) for path in paths]

    def _set_rows(self, params, prefix: str, values: np.ndarray, kind: str = "weight") -> None:
        """``values``' rows (a weight's, or a bias's entries) into the ``kind`` of each linear they hold."""
        start = 0
        for path, count in self._rows(prefix):
            params[f"{path}.{kind}"].data.copy_(torch.from_numpy(np.ascontiguousarray(values[start : start + count])))
            start += count

    def _norm_constant(self, name: str) -> float:
        """The constant edgecomp's graph folded into a norm weight (the attention scale in q_norm)."""
        if self.family.qk_norm and name.endswith("q_norm.weight"):
            return attention_scale(self.family, self.config_json)
        return 1.0

    def _head_matrix(self, head, producers) -> np.ndarray:
        if head.op_type == "MatMulNBits":
            return self._dequantized(head)
        if head.input[1] in self.inits:
            return self._array(head.input[1]).T
        return self._array(producers[head.input[1]].input[0])  # MatMul(x, Transpose(table))

    def _embedding(self, model, producers) -> np.ndarray:
        """The embedding rows the graph looks up (dequantized, the head smoothing undone)."""
        gather = next(
            n for n in model.graph.node if n.op_type in ("Gather", "GatherBlockQuantized") and "input_ids" in n.input
        )
        if gather.op_type == "Gather":
            table = self._array(gather.input[0])
        else:
            bits = _attributes(gather)["bits"]
            zero_points = None
            if len(gather.input) > 3 and gather.input[3]:
                zero_points = self._array(gather.input[3])[..., 0]
                if bits == 4:  # one per byte here, two per byte in MatMulNBits' layout
                    zero_points = pack_nibbles(zero_points)
            scales = self._array(producers[gather.input[2]].input[0])  # the Reshape view of the head's scales
            table = dequantize_blocks(self._array(gather.input[0]), scales, zero_points, bits)
        smooth = next((n for n in model.graph.node if n.name == "/edgecomp/smooth/embedding"), None)
        if smooth is not None:
            table = table * self._array(smooth.input[1])
        return np.ascontiguousarray(table[:, : self.config.hidden_size], dtype=np.float32)

    def trainable(self, norms: bool) -> list[torch.nn.Parameter]:
        """The 4-bit layers' gains, and the norm weights when ``norms``."""
        params = [layer.gain for layers in self.layers.values() for layer in layers]
        if norms:
            for param, _ in self.norms.values():
                param.requires_grad_(True)
                params.append(param)
        return params

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """The final norm's output, [batch, tokens, hidden]: what the head reads."""
        return self.net.model(input_ids=ids).last_hidden_state

    def write_back(self, norms: bool) -> None:
        """The tuned scales (and norm weights) into the graph's initializers, in place."""
        with torch.no_grad():
            for name, layers in self.layers.items():
                scales = torch.cat([layer.scales() for layer in layers]).numpy().astype(np.float32)
                self.inits[name].CopyFrom(numpy_helper.from_array(scales, name))
            if norms:
                offset = self.family.norm_offset
                for name, (param, extra) in self.norms.items():
                    gamma = ((param + offset if offset else param) * extra).numpy().astype(np.float32)
                    self.inits[name].CopyFrom(numpy_helper.from_array(gamma, name))
