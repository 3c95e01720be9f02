"""The training recipe: embedding init, the embedding L2 term in both scopes, lr schedules, config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from features.schema import FeatureMap
from suan.config import ModelConfig
from suan.models.counts import example_batch
from suan.models.ctr import build_model
from suan.recipe.config import OptimConfig
from suan.recipe.optim import build_optimizer, lr_factor, param_groups, step_budget
from suan.recipe.regularization import embedding_penalty, touch_weights
from suan.utils.config import ConfigError

ARCHS = ("suan", "dnn", "din", "bst", "hstu", "lightsuan")


@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


@pytest.mark.parametrize("arch", ARCHS)
def test_every_embedding_table_starts_small_normal_with_a_zero_padding_row(fmap, arch):
    std = 1e-3
    model = build_model(ModelConfig.from_grade(arch, 1, embedding_init_std=std), fmap)
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    assert len(tables) >= len(model.embed.tables())
    for table in tables:
        w = table.weight.detach()
        body = w[1:] if table.padding_idx == 0 else w
        if table.padding_idx is not None:
            assert (w[table.padding_idx] == 0).all()
        assert body.abs().max() < 8 * std  # nn.Embedding's N(0, 1) would be ~1000x this
        if body.numel() > 2000:
            assert body.std().item() == pytest.approx(std, rel=0.1)
    # every feature table keeps row 0 as padding (ids 0 = missing)
    assert all(t.padding_idx == 0 for t in model.embed.tables().values())


def test_dense_layers_keep_pytorch_default_init(fmap):
    model = build_model(ModelConfig.from_grade("suan", 1), fmap)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            bound = 1 / math.sqrt(m.in_features)  # kaiming_uniform(a=√5) gives U(±1/√fan_in)
            assert m.weight.abs().max() <= bound + 1e-7
            assert m.weight.std() > bound / 4


def _model_and_batch(fmap, batch_size=64, seed=0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig.from_grade("dnn", 0, embedding_init_std=0.1), fmap)
    batch = example_batch(fmap, 8, batch_size)
    g = torch.Generator().manual_seed(seed)
    for field in fmap.fields:
        if field.vocab and field.name in batch:  # random ids, padding (0) included
            batch[field.name] = torch.randint(0, field.vocab_size, batch[field.name].shape, generator=g)
    return model, batch


def test_table_scope_is_half_lambda_times_the_squared_norm_of_every_feature_table(fmap):
    model, batch = _model_and_batch(fmap)
    want = 0.5 * 0.01 * sum(t.weight.square().sum() for t in model.embed.tables().values())
    got = embedding_penalty(model.embed, batch, 0.01, "table")
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert embedding_penalty(model.embed, batch, 0.0, "table").item() == 0.0


def test_batch_scope_penalises_only_looked_up_rows_with_their_weights(fmap):
    model, batch = _model_and_batch(fmap)
    tables, lookups = model.embed.tables(), model.embed.lookups(batch)
    weights = {v: torch.rand(t.num_embeddings) + 1 for v, t in
               ((model.embed.table_vocab[k], t) for k, t in tables.items())}
    want = 0.0
    for key, ids in lookups.items():
        for row in set(ids.tolist()) - {0}:
            want += weights[model.embed.table_vocab[key]][row].item() * tables[key].weight[row].square().sum().item()
    got = embedding_penalty(model.embed, batch, 0.02, "batch", weights)
    assert got.item() == pytest.approx(0.5 * 0.02 * want, rel=1e-5)
    # gradients reach exactly the looked-up rows
    got.backward()
    key = next(iter(lookups))
    touched = set(lookups[key].tolist()) - {0}
    nonzero = set(torch.nonzero(tables[key].weight.grad.abs().sum(-1)).flatten().tolist())
    assert nonzero == touched


def test_touch_weights_make_the_batch_penalty_match_the_table_penalty_in_expectation():
    # one table of 50 rows with skewed counts; batches draw rows in proportion to their counts
    rng = np.random.default_rng(0)
    counts = np.concatenate([[0, 0], rng.integers(1, 40, 48)])
    N, B = int(counts.sum()), 8  # each row looks one id up
    w = torch.randn(50, 4)
    weights = touch_weights({"v": counts}, N, B)["v"]
    table = 0.5 * w.square().sum().item()
    p = counts / counts.sum()
    draws = []
    for _ in range(4000):
        rows = np.unique(rng.choice(50, size=B, p=p))
        draws.append(0.5 * (weights[rows] * w[rows].square().sum(-1)).sum().item())
    ratio = np.mean(draws) / (0.5 * w[2:].square().sum().item())
    # p_j = min(1, B n_j / N) is the first-order inclusion chance of each row in a batch of B
    assert ratio == pytest.approx(1.0, abs=0.1)
    assert table > 0 and (weights >= 1).all()


def test_a_warmup_fraction_is_the_same_share_of_every_run_and_needs_a_stepwise_schedule():
    by_share = OptimConfig(schedule="cosine", warmup_fraction=0.1, min_lr_ratio=0.1)
    for total in (80, 2500):
        by_steps = OptimConfig(schedule="cosine", warmup_steps=total // 10, min_lr_ratio=0.1)
        assert [lr_factor(s, by_share, total) for s in range(total + 1)] == \
            pytest.approx([lr_factor(s, by_steps, total) for s in range(total + 1)])
    assert lr_factor(0, by_share, 80) == pytest.approx(1 / 8)  # 8 warm-up steps of an 80-step run
    with pytest.raises(ValueError, match="not both"):
        OptimConfig(schedule="cosine", warmup_steps=5, warmup_fraction=0.1)
    with pytest.raises(ValueError, match="warm-up needs"):
        OptimConfig(warmup_fraction=0.1)  # plateau changes the lr by epoch


def test_lr_factor_warms_up_then_follows_the_cosine_to_its_floor():
    cfg = OptimConfig(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(9, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(10, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.55)
    assert lr_factor(110, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(500, cfg, 110) == pytest.approx(0.1)
    flat = OptimConfig(schedule="constant", warmup_steps=4)
    assert [lr_factor(s, flat, 100) for s in (0, 3, 50)] == [0.25, 1.0, 1.0]


def test_plateau_cuts_the_lr_of_every_group_after_an_epoch_without_gain(fmap):
    model = build_model(ModelConfig.from_grade("dnn", 0), fmap)
    cfg = OptimConfig(lr=1e-3, embedding_lr=2e-3)
    out = build_optimizer(param_groups(model, cfg), cfg, total_steps=100)
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["monitor"] == "valid_auc"
    sched.step(0.70)
    sched.step(0.75)  # a gain: unchanged
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-3, 1e-3, 1e-3])
    sched.step(0.75005)  # below the 1e-4 threshold: a plateau
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-4, 1e-4, 1e-4])


def test_plateau_on_logloss_wants_it_lower(fmap):
    model = build_model(ModelConfig.from_grade("dnn", 0), fmap)
    cfg = OptimConfig(lr=1e-3, select_on="logloss")
    out = build_optimizer(param_groups(model, cfg), cfg, total_steps=100)
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["monitor"] == "valid_logloss"
    sched.step(0.60)
    sched.step(0.55)  # lower is a gain: unchanged
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3] * 3)
    sched.step(0.56)  # higher: a plateau
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4] * 3)
    with pytest.raises(ConfigError, match="select_on"):
        OptimConfig(select_on="gauc")


def test_embeddings_get_no_decoupled_decay_and_dense_matrices_do(fmap):
    model = build_model(ModelConfig.from_grade("suan", 0), fmap)
    groups = {g["name"]: g for g in param_groups(model, OptimConfig(weight_decay=0.01))}
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    assert {id(p) for p in groups["embedding"]["params"]} == emb
    assert groups["embedding"]["weight_decay"] == 0 and groups["dense"]["weight_decay"] == 0.01
    assert all(p.dim() >= 2 for p in groups["dense"]["params"])


def test_step_budget_and_config_checks():
    assert step_budget(-1, 3, 40) == 120 and step_budget(50, 3, 40) == 50
    with pytest.raises(ConfigError, match="warm-up needs"):
        OptimConfig(schedule="plateau", warmup_steps=5)
    with pytest.raises(ConfigError, match="embedding_l2_scope"):
        OptimConfig(embedding_l2_scope="rows")
    with pytest.raises(ConfigError, match="plateau_factor"):
        OptimConfig(plateau_factor=1.0)


def test_attention_bias_tables_get_their_own_lr_only_when_asked(fmap):
    model = build_model(ModelConfig.from_grade("suan", 0), fmap)
    tables = {id(p) for n, p in model.named_parameters() if n.endswith((".pos_bias", ".time_bias"))}
    assert len(tables) == 2  # SUAN's default mixer learns a position and a time-gap bias
    plain = {g["name"]: g for g in param_groups(model, OptimConfig())}
    assert set(plain) == {"embedding", "dense", "dense_no_decay"}  # the optimiser state of older runs still loads
    assert tables <= {id(p) for p in plain["dense_no_decay"]["params"]}
    groups = {g["name"]: g for g in param_groups(model, OptimConfig(lr=1e-3, attention_bias_lr=0.05))}
    assert {id(p) for p in groups["attention_bias"]["params"]} == tables
    assert groups["attention_bias"]["lr"] == 0.05 and groups["attention_bias"]["weight_decay"] == 0.0
    assert not tables & {id(p) for g in ("embedding", "dense", "dense_no_decay") for p in groups[g]["params"]}
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    with pytest.raises(ConfigError, match="attention_bias_lr"):
        OptimConfig(attention_bias_lr=-1.0)
