"""Distillation: losses match their definitions; online trains both models, offline freezes the teacher."""

from __future__ import annotations

import math

import pytest
import torch

from distill.losses import online_distillation_loss, soft_bce
from pipelines.args import DistillArgs
from pipelines.artifacts import load_model_dir
from pipelines.distill import run_distill


def _bce(p, q):
    return -(q * math.log(p) + (1 - q) * math.log(1 - p))


def test_soft_bce_and_total_loss_match_their_definitions():
    zs, zt, y = torch.tensor([0.3, -1.2]), torch.tensor([1.0, -0.5]), torch.tensor([1.0, 0.0])
    t = 2.0
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    want_soft = sum(_bce(sig(a / t), sig(b / t)) for a, b in zip(zs.tolist(), zt.tolist(), strict=True)) / 2
    assert soft_bce(zs, zt, t).item() == pytest.approx(want_soft, rel=1e-6)
    parts = online_distillation_loss(zs, zt, y, t, weight=t**2)
    want_s = (_bce(sig(0.3), 1.0) + _bce(sig(-1.2), 0.0)) / 2
    want_t = (_bce(sig(1.0), 1.0) + _bce(sig(-0.5), 0.0)) / 2
    assert parts["loss"].item() == pytest.approx(want_s + want_t + 4 * want_soft, rel=1e-6)
    frozen = online_distillation_loss(zs, zt, y, t, weight=1.0, train_teacher=False)
    assert frozen["loss"].item() == pytest.approx(want_s + want_soft, rel=1e-6)


def test_soft_term_sends_no_gradient_to_the_teacher():
    zs = torch.tensor([0.3, -1.2], requires_grad=True)
    zt = torch.tensor([1.0, -0.5], requires_grad=True)
    soft_bce(zs, zt, 2.0).backward()
    assert zt.grad is None and zs.grad is not None and zs.grad.abs().sum() > 0


def _args(data, out, **kw):
    base = dict(data=str(data), out=str(out), teacher_grade=1, student_grade=0, student_model="suan",
                max_epochs=1, batch_size=256, progress=False,
                mlflow_uri=f"sqlite:///{out.parent / 'mlflow' / 'mlflow.db'}")
    return DistillArgs(**{**base, **kw})


@pytest.mark.integration
def test_online_then_offline_distillation(tiny_synthetic, tmp_path):
    data = tiny_synthetic / "data"
    online = run_distill(_args(data, tmp_path / "online"))
    assert {"test_auc", "test_teacher_auc", "valid_auc", "valid_teacher_auc"} <= set(online)
    student, cfg, _ = load_model_dir(tmp_path / "online" / "model")
    assert cfg.grade == 0
    teacher_before, tcfg, _ = load_model_dir(tmp_path / "online" / "teacher_model")
    assert tcfg.grade == 1
    offline = run_distill(_args(data, tmp_path / "offline", mode="offline", teacher_run=str(tmp_path / "online" / "teacher_model"),
                                teacher_model="suan"))
    # a frozen teacher scores exactly as it did when it was saved
    assert offline["test_teacher_auc"] == pytest.approx(online["test_teacher_auc"], abs=1e-9)
    teacher_after, _, _ = load_model_dir(tmp_path / "offline" / "teacher_model")
    for a, b in zip(teacher_before.state_dict().values(), teacher_after.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
