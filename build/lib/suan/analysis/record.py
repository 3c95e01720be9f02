"""Record every layer's self-attention probabilities of a sequence CTR model without changing its outputs.

``record_attention(model)`` attaches a :class:`LayerRecord` as the ``recorder`` of each layer's
self-attention module for the duration of the ``with`` block and removes it afterwards: no global
flag, and a model outside the block runs exactly as before. The attention modules compute the
probabilities with the reference math next to their normal (fast) forward.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class LayerRecord:
    """What one layer's self-attention handed over, one entry per forward call (detached, on CPU)."""

    probs: list[Tensor] = field(default_factory=list)
    masks: list[Tensor] = field(default_factory=list)
    lengths: list[Tensor] = field(default_factory=list)
    num_targets: list[Tensor] = field(default_factory=list)
    timestamps: list[Tensor] = field(default_factory=list)
    routes: list[Tensor | None] = field(default_factory=list)

    def record(self, probs: Tensor, *, mask: Tensor, lengths: Tensor, num_targets: Tensor, timestamps: Tensor,
               route: Tensor | None = None) -> None:
        """Called by the attention module.

        Args:
            probs: [B, H, L, L] probabilities (queries x keys).
            mask: [B, L, L] bool, the keys each query may attend to.
            lengths, num_targets: [B]; timestamps: [B, L].
            route: [B] bool, True where a layer router chose full attention (None without a router).
        """
        self.probs.append(probs.detach().float().cpu())
        self.masks.append(mask.detach().cpu())
        self.lengths.append(lengths.detach().cpu())
        self.num_targets.append(num_targets.detach().cpu())
        self.timestamps.append(timestamps.detach().cpu())
        self.routes.append(None if route is None else route.detach().cpu())


@dataclass
class Recording:
    """The per-layer records of one ``record_attention`` block."""

    layers: list[LayerRecord]

    def pop(self) -> list[dict[str, Tensor | None]]:
        """Per layer, the entries of the latest forward call (removed from the records).

        Returns:
            one dict per layer with ``probs``, ``mask``, ``lengths``, ``num_targets``, ``timestamps``, ``route``.
        """
        if not all(layer.probs for layer in self.layers):
            raise RuntimeError("no forward call was recorded")
        return [dict(probs=r.probs.pop(), mask=r.masks.pop(), lengths=r.lengths.pop(),
                     num_targets=r.num_targets.pop(), timestamps=r.timestamps.pop(), route=r.routes.pop())
                for r in self.layers]


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block of a sequence CTR model, in layer order.

    Raises:
        ValueError: a layer's mixer cannot hand over its probabilities (e.g. HSTU's pointwise attention).
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(f"{type(model).__name__} has no attention blocks (dnn/din pool without attention)")
    layers = [block.self_attn if hasattr(block, "self_attn") else block.attn for block in blocks]
    for i, layer in enumerate(layers):
        if not hasattr(layer, "recorder"):
            raise ValueError(f"layer {i}: {type(layer).__name__} does not expose attention probabilities")
    return layers


@contextmanager
def record_attention(model: nn.Module) -> Iterator[Recording]:
    """Within the block, every forward of ``model`` also records each layer's probabilities.

    Yields:
        a :class:`Recording`; ``pop()`` returns the latest forward's per-layer tensors.
    """
    layers = attention_layers(model)
    recording = Recording([LayerRecord() for _ in layers])
    for module, record in zip(layers, recording.layers, strict=True):
        module.recorder = record
    try:
        yield recording
    finally:
        for module in layers:
            module.recorder = None


def without_relative_bias(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every attention layer's learned position and time bias set to zero."""
    stripped = copy.deepcopy(model)
    with torch.no_grad():
        for layer in attention_layers(stripped):
            for module in (layer, *layer.children()):
                for name in ("pos_bias", "time_bias"):
                    bias = getattr(module, name, None)
                    if isinstance(bias, Tensor):
                        bias.zero_()
    return stripped
