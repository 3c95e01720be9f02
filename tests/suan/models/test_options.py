"""Model options (position, head, layer router, ablations, sink calibration): counts, gradients, candidate
isolation, known answers, equalities with the plain model, config validation and ONNX export."""

from __future__ import annotations

import pytest
import torch

from features.schema import FeatureMap
from suan.config import ModelConfig
from suan.mixers.base import MixerConfig
from suan.mixers.registry import build_mixer
from suan.mixers.sparse_attn import SparseOptions
from suan.models.counts import count_params, example_batch, suan_params
from suan.models.ctr import build_model
from suan.models.layer_router import RoutedAttention
from suan.ops.common.masks import attention_mask
from suan.ops.common.rope import apply_rope, rope_tables
from suan.utils.config import ConfigError

# fp32 logits (|logit| ~ 10-50 with perturbed weights): candidate-parallel vs one at a time, and the
# explicit-probability path vs SDPA / naive vs torch
ATOL = 1e-5
RTOL = 1e-5
ISOLATION_SHARE = 1e-6
OPTIONS = {
    "rope": dict(position="rope"), "no_position": dict(position="none"), "histograph": dict(head="histograph"),
    "router": dict(layer_router=True), "fixed_seqfree": dict(ablate="fixed:0;seqfree:1"),
    "stale_qk": dict(ablate="stale_qk:1"), "calibrated": dict(sink_beta=0.3, sink_tau=1.5),
    "authors_wiring": dict(wiring="authors"), "candidate_in_head": dict(candidate_in_head=True),
    "pool_history": dict(pool_history=True),
    "authors_full": dict(wiring="authors", candidate_in_head=True, pool_history=True),
    "branches_plain": dict(wiring="branches", candidate_in_head=False, pool_history=False),
    "histograph_pooled": dict(head="histograph", pool_history=True),
    "pool_inputs": dict(pool_inputs=True), "histograph_inputs": dict(head="histograph", pool_inputs=True),
}


# these tests compare two computations of the same scores; at the default 1e-4 embedding init the first
# RMSNorm is eps-dominated and amplifies fp32 rounding ~3000x, so the models start at a unit-scale init
EQUIVALENCE_INIT_STD = 0.02

@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


def _model(fmap: FeatureMap, seed: int = 0, **options) -> torch.nn.Module:
    """A grade-2 (2-layer) SUAN with every parameter perturbed, so zero-initialised paths matter."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig.from_grade("suan", 2, embedding_init_std=EQUIVALENCE_INIT_STD, **options), fmap)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _batch(fmap: FeatureMap, n_cand: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    batch = example_batch(fmap, seq_len=12, batch=4)
    batch["hist_len"] = torch.tensor([12, 7, 1, 0])
    for name in ("hist_item_id", "hist_cate_id", "hist_action"):
        batch[name] = torch.randint(2, fmap.field(name).vocab_size, batch[name].shape, generator=gen)
        batch[name][torch.arange(12).unsqueeze(0) >= batch["hist_len"].unsqueeze(1)] = 0
    batch["hist_ts"] = torch.sort(torch.randint(0, 10**6, (4, 12), generator=gen), dim=1).values
    batch["target_ts"] = torch.full((4,), 2 * 10**6)
    if n_cand:
        batch.update({f: torch.randint(2, fmap.field(f).vocab_size, (4, n_cand), generator=gen)
                      for f in ("item_id", "cate_id")})
    return batch


@pytest.mark.parametrize("name", OPTIONS)
def test_option_counts_gradients_and_candidate_isolation(fmap, name):
    cfg = ModelConfig.from_grade("suan", 2, **OPTIONS[name])
    model = _model(fmap, **OPTIONS[name])
    assert suan_params(cfg, fmap) == count_params(model)
    model(_batch(fmap)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # isolation is exact in arithmetic; in float64 only the ops that compute in fp32 inside (the calibrated
    # softmax) leave rounding, so the tolerance is a share of the largest logit (a leak moves scores by ~1e-2)
    model.double().eval()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in _batch(fmap, n_cand=3).items()}
    with torch.no_grad():
        together = model(batch)  # [B, C]
        alone = torch.stack([model({**batch, "item_id": batch["item_id"][:, c], "cate_id": batch["cate_id"][:, c]})
                             for c in range(3)], 1)
    torch.testing.assert_close(together, alone, atol=ISOLATION_SHARE * float(together.abs().max()), rtol=0)


def test_calibration_paths_agree_and_change_scores(fmap):
    batch = _batch(fmap)
    plain = _model(fmap).eval()
    options = OPTIONS["calibrated"]
    with torch.no_grad():
        ref = _model(fmap, backend="naive", **options).eval()(batch)
        fast = _model(fmap, backend="torch", **options).eval()(batch)
        assert not torch.allclose(fast, plain(batch), atol=1e-3), "calibration with tau 1.5 must move the scores"
        # a threshold nothing reaches: the explicit-probability path equals plain (SDPA) attention
        untouched = _model(fmap, sink_beta=0.5, sink_tau=1e9).eval()(batch)
        torch.testing.assert_close(untouched, plain(batch), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=RTOL)


def test_stale_qk_on_the_first_layer_is_the_plain_model(fmap):
    batch = _batch(fmap)
    with torch.no_grad():
        assert torch.equal(_model(fmap, ablate="stale_qk:0").eval()(batch), _model(fmap).eval()(batch))
        assert not torch.allclose(_model(fmap, ablate="stale_qk:1").eval()(batch), _model(fmap).eval()(batch))


def _mixer_inputs(seq_len: int = 7):
    gen = torch.Generator().manual_seed(2)
    lengths, targets = torch.tensor([7, 4, 1]), torch.tensor([1, 2, 1])
    ts = torch.sort(torch.randint(0, 10**6, (3, seq_len), generator=gen), dim=1).values
    return torch.randn(3, seq_len, 16, generator=gen), dict(lengths=lengths, num_targets=targets, timestamps=ts)


def test_fixed_mixing_starts_uniform_and_seqfree_ignores_content():
    x, kw = _mixer_inputs()
    fixed = build_mixer(MixerConfig(name="softmax_rel", d_model=16, num_heads=2, max_len=8, ablate="fixed"))
    probs = fixed.attention_probs(x, **kw)  # zero-initialised mixing matrix: uniform over the allowed keys
    mask = attention_mask(kw["lengths"], kw["num_targets"], 7).unsqueeze(1).float().expand(-1, 2, -1, -1)
    valid = (torch.arange(7) < kw["lengths"].unsqueeze(1)).view(3, 1, 7, 1)
    torch.testing.assert_close(probs, (mask / mask.sum(-1, keepdim=True)) * valid)
    seqfree = build_mixer(MixerConfig(name="sparse", d_model=16, num_heads=2, max_len=8, ablate="seqfree"))
    with torch.no_grad():
        seqfree.mix.normal_()
    assert torch.equal(seqfree.attention_probs(x, **kw), seqfree.attention_probs(torch.randn_like(x), **kw))


def test_layer_router_picks_one_branch_in_eval_and_trains_the_gate():
    x, kw = _mixer_inputs()
    routed = RoutedAttention(MixerConfig(name="softmax_rel", d_model=16, num_heads=2, max_len=8,
                                         options=SparseOptions(window=1, dilation=3)))
    with torch.no_grad():
        routed.gate.weight.zero_()
        for bias, branch in (([5.0, -5.0], routed.full), ([-5.0, 5.0], routed.sparse)):
            routed.gate.bias.copy_(torch.tensor(bias))
            torch.testing.assert_close(routed.eval()(x, **kw), branch(x, **kw), atol=0, rtol=0)
    torch.manual_seed(0)
    routed.train()(x, **kw).square().sum().backward()
    assert routed.gate.weight.grad.abs().sum() > 0, "straight-through Gumbel must reach the router"


def test_rope_scores_depend_on_relative_position_only():
    gen = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 1, 2, 6, 8, generator=gen)
    pos = torch.tensor([[0, 1, 2, 3, 4, 4]])  # two candidates at n_hist = 4
    scores = []
    for shift in (0, 37):
        cos, sin = rope_tables(pos + shift, 8)
        scores.append(apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2))
        torch.testing.assert_close(apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        rope_tables(pos, 7)


@pytest.mark.parametrize("bad", [dict(ablate="fixed:2"), dict(ablate="fixed:0;seqfree:0"), dict(ablate="bogus:0"),
                                 dict(ablate="fixed:a"), dict(position="sinusoid"), dict(head="mean"),
                                 dict(sink_beta=1.5), dict(sink_tau=0.0)])
def test_invalid_options_are_rejected(bad):
    with pytest.raises(ConfigError):
        ModelConfig.from_grade("suan", 2, **bad)


@pytest.mark.parametrize("options", [dict(sink_beta=0.5), dict(ablate="fixed:0"), dict(ablate="seqfree:1")])
def test_an_explicit_triton_backend_is_never_swapped_for_torch_silently(options):
    # these compute explicit attention probabilities, which have no Triton kernel: a clear error, not a quiet torch run
    with pytest.raises(ConfigError, match="no Triton kernel"):
        ModelConfig.from_grade("suan", 2, backend="triton", **options)
    ModelConfig.from_grade("suan", 2, backend="auto", **options)  # auto may pick torch: that is what auto means


def test_options_need_a_fitting_arch_and_old_configs_still_load():
    for arch, bad in (("hstu", dict(position="rope")), ("bst", dict(layer_router=True)), ("dnn", dict(head="histograph")),
                      ("hstu", dict(sink_beta=0.5))):
        with pytest.raises(ConfigError):
            ModelConfig.from_grade(arch, 1, **bad)
    assert ModelConfig.from_grade("bst", 1, position="rope", ablate="stale_qk:0").position == "rope"
    old = {k: v for k, v in ModelConfig.from_grade("suan", 1).to_dict().items()
           if k not in ("position", "head", "layer_router", "ablate", "sink_beta", "sink_tau")}
    assert ModelConfig.from_dict(old) == ModelConfig.from_grade("suan", 1)


@pytest.mark.integration
@pytest.mark.slow
def test_rope_histograph_model_exports_to_onnx_within_parity(fmap, tmp_path):
    from pipelines.onnx_export import export_onnx, parity

    model = build_model(ModelConfig.from_grade("suan", 0, position="rope", head="histograph", backend="torch"), fmap)
    export_onnx(model, fmap, tmp_path / "model.onnx")
    assert len(parity(model, fmap, tmp_path / "model.onnx")) == 5


@pytest.mark.integration
@pytest.mark.parametrize("weights", ["softmax", "unit"])
def test_din_with_either_weights_exports_to_onnx_within_parity(fmap, tmp_path, weights):
    from pipelines.onnx_export import export_onnx, parity

    model = build_model(ModelConfig.from_grade("din", 0, din_weights=weights), fmap)
    export_onnx(model, fmap, tmp_path / "model.onnx")
    assert len(parity(model, fmap, tmp_path / "model.onnx")) == 5  # every recorded batch within tolerance
