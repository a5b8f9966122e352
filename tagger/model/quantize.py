"""int8 as fake quantization in the graph: each convolution and dense layer of the network
(not the front-end) gets its input quantized per tensor to uint8 over the calibrated range
and its weights per output channel to int8 (symmetric). The runtimes turn these
quantize-dequantize pairs into int8 kernels (OpenVINO: FakeQuantize → u8×i8 convolutions);
in torch the same graph runs in float and gives the int8 model's scores within rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tagger.model.int8spec import Int8Spec

QUANTIZED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def quantizable(model: nn.Module) -> dict[str, nn.Module]:
    """The layers int8 applies to, by module name (the keys of ``Int8Spec.ranges``)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QUANTIZED)}


class FakeQuant(nn.Module):
    """``layer`` with its input quantized to u8 over ``[low, high]`` and its weights to i8 per channel."""

    def __init__(self, layer: nn.Module, low: float, high: float) -> None:
        super().__init__()
        self.layer = layer
        low, high = min(low, 0.0), max(high, 1e-6)  # the range must hold 0 exactly
        self.scale = (high - low) / 255.0
        self.zero_point = round(-low / self.scale)
        w = layer.weight.detach()
        absmax = w.abs().amax(dim=tuple(range(1, w.dim()))).clamp(min=1e-12)
        self.register_buffer("w_scale", (absmax / 127.0).float(), persistent=False)
        self.register_buffer("w_zero", torch.zeros(len(absmax), dtype=torch.int32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 255)
        # the weights span ±127 steps (symmetric); -128 is allowed only because ONNX's QDQ
        # export takes no narrower range, and never reached
        w = torch.fake_quantize_per_channel_affine(self.layer.weight, self.w_scale, self.w_zero, 0, -128, 127)
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return F.linear(x, w, layer.bias)
        return layer._conv_forward(x, w, layer.bias)


def quantize_model(model: nn.Module, spec: Int8Spec) -> nn.Module:
    """Wrap each layer named in ``spec.ranges`` in ``FakeQuant``, in place; returns ``model``."""
    layers = quantizable(model)
    unknown = set(spec.ranges) - set(layers)
    if unknown:
        raise ValueError(f"int8 ranges for layers the model does not have: {sorted(unknown)}")
    for name, (low, high) in spec.ranges.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, FakeQuant(layers[name], low, high))
    return model
