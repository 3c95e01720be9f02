"""Models: computed parameter/FLOP counts equal real counts; candidate-parallel == one at a time."""

from __future__ import annotations

import math

import pytest
import torch

from features.schema import FeatureMap
from suan.config import GRADES, ModelConfig, mixer_options_from_counts
from suan.mixers.halonet import HaloOptions
from suan.mixers.routing import RoutingOptions
from suan.mixers.sparse_attn import SparseOptions
from suan.models.counts import count_params, example_batch, measure_flops, suan_flops, suan_params
from suan.models.ctr import build_model
from suan.utils.config import ConfigError

ARCHS = ("suan", "lightsuan", "dnn", "din", "bst", "hstu")
ISOLATION_ATOL = 1e-5


@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


@pytest.mark.parametrize("grade", [-2, 0, 1, 2, 3])
def test_suan_counts_from_config_equal_real_counts(fmap, grade):
    cfg = ModelConfig.from_grade("suan", grade, backend="naive")
    model = build_model(cfg, fmap)
    assert suan_params(cfg, fmap) == count_params(model)
    assert suan_flops(cfg, fmap) == measure_flops(model, fmap, cfg.seq_len)


def test_grades_grow_monotonically_and_span_orders_of_magnitude(fmap):
    dense = [suan_params(ModelConfig.from_grade("suan", g), fmap)["dense"] for g in sorted(GRADES)]
    flops = [suan_flops(ModelConfig.from_grade("suan", g), fmap) for g in sorted(GRADES)]
    assert dense == sorted(dense) and flops == sorted(flops)
    assert dense[-1] / dense[0] > 100


def _batch_with_candidates(fmap, n_cand, seed=0):
    torch.manual_seed(seed)
    batch = example_batch(fmap, seq_len=12, batch=5)
    batch["hist_len"] = torch.tensor([12, 7, 1, 0, 3])
    for name in ("hist_item_id", "hist_cate_id", "hist_action"):
        vocab = fmap.field(name).vocab_size
        batch[name] = torch.randint(2, vocab, batch[name].shape)
        batch[name][torch.arange(12).unsqueeze(0) >= batch["hist_len"].unsqueeze(1)] = 0
    batch["hist_ts"] = torch.sort(torch.randint(0, 10**6, (5, 12)), dim=1).values
    batch["target_ts"] = torch.full((5,), 2 * 10**6)
    cands = {f: torch.randint(2, fmap.field(f).vocab_size, (5, n_cand)) for f in ("item_id", "cate_id")}
    return batch, cands


@pytest.mark.parametrize("arch", ARCHS)
def test_candidate_parallel_scores_equal_scoring_each_alone(fmap, arch):
    model = build_model(ModelConfig.from_grade(arch, 1, backend="torch"), fmap).eval()
    with torch.no_grad():
        for p in model.parameters():  # biases start at zero; randomise so every path matters
            p.add_(0.05 * torch.randn_like(p))
        batch, cands = _batch_with_candidates(fmap, n_cand=4)
        together = model({**batch, **cands})  # [B, C]
        alone = torch.stack([model({**batch, **{f: c[:, k] for f, c in cands.items()}}) for k in range(4)], 1)
    assert together.shape == (5, 4)
    torch.testing.assert_close(together, alone, atol=ISOLATION_ATOL, rtol=0)
    assert torch.isfinite(together).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_training_step_reduces_loss_on_a_fixed_batch(fmap, arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_grade(arch, 0), fmap)
    batch, _ = _batch_with_candidates(fmap, 1)
    batch = {k: v.repeat(4, *([1] * (v.dim() - 1))) for k, v in batch.items()}
    batch["label"] = (torch.arange(20) % 2).float()
    batch["item_id"] = torch.arange(20) % 7 + 2
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_calibration_undoes_negative_sampling(fmap):
    cfg = ModelConfig.from_grade("dnn", 0, negative_sampling_rate=0.1)
    model = build_model(cfg, fmap)
    p = torch.tensor([0.5, 0.9])
    logits = torch.log(p / (1 - p))
    # keeping 10% of negatives inflates odds 10x: calibrated q = p / (p + (1 - p) / 0.1)
    want = p / (p + (1 - p) / 0.1)
    torch.testing.assert_close(model.probabilities(logits), want)
    assert math.isclose(float(build_model(cfg.replace(negative_sampling_rate=1.0), fmap).probabilities(logits)[0]), 0.5)


def test_model_config_round_trip_and_validation(tmp_path):
    cfg = ModelConfig.from_grade("suan", 2, dropout=0.1)
    cfg.save(tmp_path / "m.yaml")
    assert ModelConfig.load(tmp_path / "m.yaml") == cfg
    with pytest.raises(ConfigError):
        ModelConfig.from_grade("suan", 99)
    with pytest.raises(ConfigError):
        cfg.replace(num_heads=5)


@pytest.mark.parametrize("arch", ARCHS)
def test_dense_parameters_split_into_encoder_and_head(fmap, arch):
    model = build_model(ModelConfig.from_grade(arch, 1), fmap)
    params = count_params(model)
    assert params["head"] == sum(p.numel() for p in model.head.parameters()) > 0
    assert params["encoder"] + params["head"] == params["dense"]
    assert (params["encoder"] > 0) == (arch != "dnn")  # a mean-pooling DNN has no encoder weights


def test_a_config_saved_before_the_version_field_loads_as_it_was_trained(tmp_path):
    from suan.config import MODEL_CONFIG_VERSION, V1_MEANING

    today = ModelConfig.from_grade("suan", 1)
    old = {k: v for k, v in today.to_dict().items() if k not in (*V1_MEANING, "version")}  # a version-1 file
    loaded = ModelConfig.from_dict(old)
    assert (loaded.wiring, loaded.candidate_in_head, loaded.pool_history, loaded.embedding_init_std) == \
        ("branches", False, False, 1.0)
    assert loaded.version == MODEL_CONFIG_VERSION
    # a current file round-trips with today's values, and a file from a newer schema is refused
    today.save(tmp_path / "model_config.json")
    assert ModelConfig.load(tmp_path / "model_config.json") == today
    with pytest.raises(ConfigError, match="version"):
        ModelConfig.from_dict({**today.to_dict(), "version": MODEL_CONFIG_VERSION + 1})


def test_a_mixers_own_options_reach_it_from_the_command_line_by_count_or_by_name(fmap):
    from pipelines.args import TrainArgs, parse_variant
    from pipelines.train import model_config

    assert parse_variant("suan:mixer=routing/num_blocks=2") == ("suan", {"mixer": "routing", "num_blocks": 2})
    assert parse_variant("suan:mixer=routing/mixer.clusters=2/mixer.capacity=3") == \
        ("suan", {"mixer": "routing", "mixer_options": ("clusters=2", "capacity=3")})
    by_count = TrainArgs(data="unused", out="unused", grade=1, mixer="routing", num_blocks=2)
    by_name = TrainArgs(data="unused", out="unused", grade=1, mixer="routing", mixer_options=("clusters=2",))
    for args in (by_count, by_name):
        cfg = model_config(args, fmap)
        assert cfg.mixer_options == RoutingOptions(clusters=2, capacity=8)
        centroids = build_model(cfg, fmap).blocks[0].self_attn.centroids  # [H, C, D/H]: C clusters per head
        assert centroids.shape[1] == 2
    bad = [dict(mixer_options=("clusterz=2",)), dict(mixer_options=("clusters=two",)),
           dict(mixer_options=("clusters=2",), num_blocks=3), dict(num_blocks=0), dict(mixer_options=("clusters=0",))]
    messages = ["among \\['clusters', 'capacity'\\]", "not of type int", "also set by num_blocks=3", "clusters must be >= 1",
                "clusters must be >= 1"]
    for kwargs, message in zip(bad, messages, strict=True):
        with pytest.raises(ConfigError, match=message):
            TrainArgs(data="unused", out="unused", grade=1, mixer="routing", **kwargs)


def test_model_config_nests_the_mixers_own_options_and_refuses_another_mixers():
    light = ModelConfig.from_grade("lightsuan", 1, mixer_options={"window": 16})
    assert light.mixer_options == SparseOptions(window=16, dilation=4)
    assert ModelConfig.from_dict(light.to_dict()) == light and light.to_dict()["mixer_options"] == {"window": 16,
                                                                                                   "dilation": 4}
    assert ModelConfig.from_grade("suan", 1, mixer="routing").mixer_options == RoutingOptions()
    assert light.replace(arch="suan", mixer="halonet", mixer_options={}).mixer_options == HaloOptions()
    with pytest.raises(ConfigError, match="unknown key"):
        ModelConfig.from_grade("lightsuan", 1, mixer_options={"clusters": 2})
    with pytest.raises(ConfigError, match="takes HaloOptions"):
        light.replace(arch="suan", mixer="halonet")  # a window of 16 is not silently dropped
    with pytest.raises(ConfigError, match="does not read num_blocks"):
        mixer_options_from_counts("suan", num_blocks=8)  # softmax attention has no blocks
    with pytest.raises(ConfigError, match="does not read local_window"):
        mixer_options_from_counts("bst", local_window=16)
    assert mixer_options_from_counts("suan", "routing", num_blocks=8) == RoutingOptions(clusters=8)


def test_saved_configs_of_every_older_version_load_with_their_counts_as_options():
    from suan.config import MODEL_CONFIG_VERSION

    today = {k: v for k, v in ModelConfig.from_grade("lightsuan", 1).to_dict().items() if k != "mixer_options"}
    v3 = {**today, "version": 3, "local_window": 16, "dilation": 2, "num_blocks": 4}
    assert ModelConfig.from_dict(v3).mixer_options == SparseOptions(window=16, dilation=2)
    # a version-2 file could hold an ignored count (a distillation teacher got the student's window): it loads,
    # with the count dropped, which is what the trained model used
    v2 = {**ModelConfig.from_grade("suan", 1).to_dict(), "version": 2, "local_window": 16}
    v2.pop("mixer_options")
    loaded = ModelConfig.from_dict(v2)
    assert loaded.mixer_options == ModelConfig.from_grade("suan", 1).mixer_options
    assert loaded.version == MODEL_CONFIG_VERSION


def test_a_mixers_implied_position_is_taken_when_unset_and_a_contradiction_is_refused():
    assert ModelConfig.from_grade("bst", 1).position == "none"  # BST's plain softmax has no position bias
    assert ModelConfig.from_grade("suan", 1, mixer="softmax_rope").position == "rope"
    assert ModelConfig.from_grade("suan", 1).position == "relative"
    assert ModelConfig.from_grade("suan", 1, position="rope").position == "rope"
    assert ModelConfig.from_grade("bst", 1, position="rope").position == "rope"  # BST with RoPE is a real option
    for arch, mixer, position in (("suan", "softmax_rope", "relative"), ("suan", "softmax_rope", "none"),
                                  ("bst", "softmax", "relative")):
        with pytest.raises(ConfigError, match="contradicts"):
            ModelConfig.from_grade(arch, 1, mixer=mixer, position=position)
    # files saved before version 4 wrote the old default "relative" where the name overrode it: loaded as run
    old = {**ModelConfig.from_grade("bst", 1).to_dict(), "position": "relative", "version": 3}
    old.pop("mixer_options")
    assert ModelConfig.from_dict(old).position == "none"


def test_pooled_inputs_widen_the_head_and_carry_the_history_embeddings_mean(fmap):
    torch.manual_seed(0)
    plain = build_model(ModelConfig.from_grade("suan", 1, embedding_init_std=0.02, pool_inputs=False), fmap)
    torch.manual_seed(0)
    pooled = build_model(ModelConfig.from_grade("suan", 1, embedding_init_std=0.02, pool_inputs=True), fmap)
    d = pooled.cfg.d_model
    assert pooled.head.net[0].num_features == plain.head.net[0].num_features + d  # the head's input width
    batch = example_batch(fmap, seq_len=8, batch=3)
    batch["hist_len"] = torch.tensor([8, 3, 0])
    out, _, _ = pooled.eval().encode(batch)  # [B, C, 4D]: outputs, pooled outputs, candidate, pooled inputs
    hist = pooled.embed.history(batch)  # [B, 8, D] right-padded
    want = torch.stack([hist[0].mean(0), hist[1, :3].mean(0), torch.zeros(d)])
    torch.testing.assert_close(out[:, 0, -d:], want)
    for arch in ("dnn", "din"):  # their heads always read their own pooling of the inputs: the option is a no-op
        torch.manual_seed(0)
        on = build_model(ModelConfig.from_grade(arch, 1, pool_inputs=True), fmap)
        torch.manual_seed(0)
        off = build_model(ModelConfig.from_grade(arch, 1, pool_inputs=False), fmap)
        assert [p.shape for p in on.parameters()] == [p.shape for p in off.parameters()]
        torch.testing.assert_close(on.eval()(batch), off.eval()(batch))


def test_a_config_saved_before_pooled_inputs_existed_loads_without_them():
    saved = ModelConfig.from_grade("suan", 1).to_dict()
    saved.pop("pool_inputs")
    assert ModelConfig.from_grade("suan", 1).pool_inputs  # the default now
    assert not ModelConfig.from_dict(saved).pool_inputs


def test_din_softmax_weights_start_as_the_dnn_mean_and_stay_candidate_parallel(fmap):
    torch.manual_seed(0)
    din = build_model(ModelConfig.from_grade("din", 1, din_weights="softmax"), fmap).eval()
    with torch.no_grad():
        for p in din.parameters():
            p.add_(0.05 * torch.randn_like(p))
        din.attention_unit[-1].weight.zero_()  # the unit scores every behaviour alike, as at the start
    dnn = build_model(ModelConfig.from_grade("dnn", 1), fmap).eval()
    unexpected = dnn.load_state_dict(din.state_dict(), strict=False).unexpected_keys
    assert unexpected and all(k.startswith("attention_unit.") for k in unexpected)  # the rest is shared
    batch, cands = _batch_with_candidates(fmap, n_cand=4)  # histories of 12, 7, 1, 0 and 3 behaviours
    with torch.no_grad():
        torch.testing.assert_close(din({**batch, **cands}), dnn({**batch, **cands}), atol=1e-5, rtol=1e-5)
        for p in din.attention_unit.parameters():  # weights that differ per behaviour: no longer the mean
            p.normal_(0.0, 3.0)
        together = din({**batch, **cands})  # [B, C]
        alone = torch.stack([din({**batch, **{f: c[:, k] for f, c in cands.items()}}) for k in range(4)], 1)
    torch.testing.assert_close(together, alone, atol=ISOLATION_ATOL, rtol=0)
    assert not torch.allclose(together, dnn({**batch, **cands}), atol=1e-3)
    with pytest.raises(ConfigError, match="din_weights is DIN's option"):
        ModelConfig.from_grade("suan", 1, din_weights="unit")


def test_din_defaults_to_softmax_weights_and_an_older_saved_din_loads_with_the_papers():
    assert ModelConfig.from_grade("din", 1).din_weights == "softmax"  # the default since stop 27
    saved = ModelConfig.from_grade("din", 1).to_dict()
    saved.pop("din_weights")  # a DIN saved before the option existed trained with the paper's weights
    assert ModelConfig.from_dict(saved).din_weights == "unit"
    # another arch's saved value never mattered (stop 25-26 saved "unit" for every arch): it loads as the default
    other = {**ModelConfig.from_grade("suan", 1).to_dict(), "din_weights": "unit"}
    assert ModelConfig.from_dict(other) == ModelConfig.from_grade("suan", 1)
