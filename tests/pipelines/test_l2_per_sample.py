"""The embedding-L2 λ per step: fixed (``embedding_l2_ref_batch`` 0) or proportional to the step's samples
(the default)."""

from __future__ import annotations

import pytest
import torch

from distill.system import DistillConfig, DistillSystem
from features.schema import FeatureMap
from pipelines.systems import CTRSystem
from suan.config import ModelConfig
from suan.models.counts import example_batch
from suan.models.ctr import build_model
from suan.recipe.config import OptimConfig
from suan.utils.config import ConfigError

ROWS = 32
# the systems are stepped without a trainer: their self.log calls warn and log nothing
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")


@pytest.fixture(scope="module")
def fmap(tiny_synthetic) -> FeatureMap:
    return FeatureMap.load(tiny_synthetic / "data" / "feature_map.json")


def _model(fmap: FeatureMap, arch: str = "dnn") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig.from_grade(arch, 0, embedding_init_std=0.1), fmap)  # large rows: a visible L2


def _batch(fmap: FeatureMap) -> dict[str, torch.Tensor]:
    batch = example_batch(fmap, 8, ROWS)
    batch["label"] = (torch.arange(ROWS) % 2).float()
    return batch


def _loss_minus_l2_free(system_of, optim: OptimConfig, batch) -> float:
    """The training loss of ``optim`` minus the same loss without the L2 term: the penalty the step adds."""
    with torch.no_grad():
        with_l2 = system_of(optim).training_step(batch, 0)
        without = system_of(OptimConfig(embedding_l2=0.0)).training_step(batch, 0)
    return (with_l2 - without).item()


def test_lambda_is_per_step_without_a_reference_batch_and_per_sample_with_one():
    assert OptimConfig(embedding_l2=0.02, embedding_l2_ref_batch=0).l2_at(256) == 0.02
    assert OptimConfig(embedding_l2=0.02, embedding_l2_ref_batch=1024).l2_at(256) == pytest.approx(0.005)
    assert OptimConfig().l2_at(1024) == OptimConfig().embedding_l2  # the default is quoted at batch 1024
    with pytest.raises(ConfigError, match="embedding_l2_ref_batch"):
        OptimConfig(embedding_l2_ref_batch=-1)


@pytest.mark.parametrize("trainer", ["train", "distill"])
def test_the_step_penalty_scales_with_the_samples_of_the_step(fmap, trainer):
    batch = _batch(fmap)
    if trainer == "train":
        def system_of(optim):
            return CTRSystem(_model(fmap), optim)
    else:
        def system_of(optim):
            return DistillSystem(_model(fmap, "lightsuan"), _model(fmap, "suan"), optim, DistillConfig())
    per_step = _loss_minus_l2_free(system_of, OptimConfig(embedding_l2=0.01, embedding_l2_ref_batch=0), batch)
    assert per_step > 0
    # λ 0.04 quoted at 4 × ROWS samples is λ 0.01 at a step of ROWS samples
    scaled = _loss_minus_l2_free(system_of, OptimConfig(embedding_l2=0.04, embedding_l2_ref_batch=4 * ROWS), batch)
    assert scaled == pytest.approx(per_step, rel=1e-4)
    # and quoted at ROWS / 2 samples it doubles
    doubled = _loss_minus_l2_free(system_of, OptimConfig(embedding_l2=0.01, embedding_l2_ref_batch=ROWS // 2), batch)
    assert doubled == pytest.approx(2 * per_step, rel=1e-4)
