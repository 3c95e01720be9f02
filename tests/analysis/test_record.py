"""Attention recording: outputs unchanged, the recorded probabilities are the ones the forward used,
recorders are removed afterwards, router choices are recorded, the bias-free copy leaves the model alone."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from features.schema import FeatureMap
from suan.analysis.record import attention_layers, record_attention, without_relative_bias
from suan.config import ModelConfig
from suan.mixers.base import MixerConfig
from suan.mixers.registry import MIXERS, build_mixer
from suan.models.counts import example_batch
from suan.models.ctr import build_model

# fp32: probabilities recorded with the reference math times V vs the mixer's own (SDPA / gather) path
ATOL = 1e-5
RTOL = 1e-5


@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


def _batch(fmap: FeatureMap) -> dict[str, torch.Tensor]:
    batch = example_batch(fmap, seq_len=10, batch=3)
    batch["hist_len"] = torch.tensor([10, 4, 0])
    batch["hist_ts"] = torch.sort(torch.randint(0, 10**6, (3, 10), generator=torch.Generator().manual_seed(0)), 1).values
    batch["target_ts"] = torch.full((3,), 2 * 10**6)
    return batch


def _model(fmap: FeatureMap, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_grade("suan", 2, **options), fmap).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def test_recording_leaves_outputs_unchanged_and_removes_itself(fmap):
    model, batch = _model(fmap), _batch(fmap)
    with torch.no_grad():
        plain = model(batch)
        with record_attention(model) as recording:
            recorded = model(batch)
            layers = recording.pop()
        after = model(batch)
    assert torch.equal(plain, recorded) and torch.equal(plain, after)
    assert all(layer.recorder is None for layer in attention_layers(model))
    assert len(layers) == 2 and layers[0]["route"] is None
    probs, lengths = layers[1]["probs"], layers[1]["lengths"]
    L = probs.shape[-1]
    assert probs.shape == (3, 2, L, L) and lengths.tolist() == [11, 5, 1]
    valid = torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1)  # [B, L]
    sums = probs.sum(-1).transpose(1, 2)  # [B, L, H]
    torch.testing.assert_close(sums[valid], torch.ones(int(valid.sum()), 2))
    assert torch.all(probs[~layers[1]["mask"].unsqueeze(1).expand_as(probs)] == 0)
    with pytest.raises(RuntimeError):
        recording.pop()


class _Keep:
    def record(self, probs, **kw):
        self.probs = probs


@pytest.mark.parametrize("name, options", [("softmax_rel", {}), ("sparse", {}), ("softmax_rope", {}),
                                           ("softmax_rel", dict(sink_beta=0.2, sink_tau=1.2)),
                                           ("sparse", dict(ablate="fixed"))])
def test_recorded_probabilities_reproduce_the_mixer_output(name, options):
    own = MIXERS[name].cls.options.from_counts(local_window=2, dilation=3, num_blocks=4)
    mixer = build_mixer(MixerConfig(name=name, d_model=16, num_heads=2, max_len=12, options=own, **options)).eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.normal_(0.0, 0.5)
    gen = torch.Generator().manual_seed(1)
    x, ts = torch.randn(3, 9, 16, generator=gen), torch.sort(torch.randint(0, 10**6, (3, 9), generator=gen), 1).values
    kw = dict(lengths=torch.tensor([9, 6, 1]), num_targets=torch.tensor([2, 1, 1]), timestamps=ts)
    mixer.recorder = _Keep()
    with torch.no_grad():
        out = mixer(x, **kw)
        # the values are the last D outputs of the projection (q, k, v; or v alone for the fixed ablation)
        v = rearrange((x @ mixer.qkv.weight.T)[..., -16:], "b l (h d) -> b h l d", h=2)  # [B, H, L, D/H]
        manual = mixer.out(rearrange(mixer.recorder.probs @ v, "b h l d -> b l (h d)"))
    torch.testing.assert_close(out, manual, atol=ATOL, rtol=RTOL)


def test_router_choices_are_recorded(fmap):
    model, batch = _model(fmap, layer_router=True), _batch(fmap)
    with torch.no_grad(), record_attention(model) as recording:
        model(batch)
        layers = recording.pop()
    for layer in layers:
        route = layer["route"]
        assert route.dtype == torch.bool and route.shape == (3,)
        attended = layer["probs"].sum(1) > 0  # [B, L, L]
        assert not (attended & ~layer["mask"]).any(), "probabilities outside the chosen branch's mask"


def test_bias_free_copy_and_unsupported_models(fmap):
    model = _model(fmap)
    stripped = without_relative_bias(model)
    for original, copy in zip(attention_layers(model), attention_layers(stripped), strict=True):
        assert copy.pos_bias.abs().sum() == 0 and copy.time_bias.abs().sum() == 0
        assert original.pos_bias.abs().sum() > 0
    for arch in ("dnn", "hstu"):
        with pytest.raises(ValueError):
            attention_layers(build_model(ModelConfig.from_grade(arch, 0), fmap))
