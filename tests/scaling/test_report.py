"""Fitting a sweep folder: laws recovered from a planted manifest, plots and report written, gaps skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling.manifest import point_name
from scaling.report import fit_sweep, render_report


def _manifest(tmp_path, grades=4, fractions=(0.125, 0.25, 0.5, 1.0)):
    points = {}
    for g in range(grades):
        n = 1e4 * 4**g
        for f in fractions:
            d = 1e6 * f
            loss = 0.40 + 3.0 / n**0.3 + 20.0 / d**0.35
            metrics = {"params_dense": n, "flops_per_sample": 30 * n, "train_samples": d,
                       "test_logloss": loss, "test_auc": 1.3 - loss}
            points[f"g{g}-f{f}"] = {"grade": g, "fraction": f, "seed": 0, "status": "done", "wall_s": 1.0,
                                    "metrics": metrics}
    points["g9-f1-s0"] = {"grade": 9, "fraction": 1.0, "seed": 0, "status": "failed", "error": "boom"}
    (tmp_path / "manifest.json").write_text(json.dumps({"points": points}))
    return tmp_path


def test_fit_sweep_recovers_planted_exponents_and_writes_outputs(tmp_path):
    result = fit_sweep(_manifest(tmp_path), n_bootstrap=20)
    joint = result["joint"]["logloss"]
    assert joint["coefficients"]["alpha"] == pytest.approx(0.3, rel=0.05)
    assert joint["coefficients"]["beta"] == pytest.approx(0.35, rel=0.05)
    per_axis = result["per_axis"]["logloss_vs_params_encoder"]
    assert per_axis["r2"] > 0.99
    assert len(result["points"]) == 16  # the failed point is left out
    assert (tmp_path / "plots" / "joint_logloss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.md").read_text()
    assert "plots/joint_logloss.png" in report and "plots/logloss_vs_params_encoder.png" in report
    assert json.loads((tmp_path / "scaling_fit.json").read_text())["compute_optimal"]["logloss"]
    assert "## Compute-optimal allocation" in report
    assert "plots/sweep_auc.png" in report
    assert (tmp_path / "plots" / "sweep_auc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_too_few_points_are_skipped_with_the_reason(tmp_path):
    result = fit_sweep(_manifest(tmp_path, grades=3, fractions=(0.5, 1.0)), n_bootstrap=0)
    assert "skipped" in result["per_axis"]["logloss_vs_params_encoder"]
    assert "skipped" in result["joint"]["auc"]
    # each one said in a sentence a newcomer understands, in the report too
    assert "3 distinct values of the encoder parameters" in result["per_axis"]["logloss_vs_params_encoder"]["why"]
    assert "did not vary the behaviours read" in result["per_axis"]["logloss_vs_seq_len"]["why"]
    assert "this sweep has 3 model size(s) and 2 data size(s)" in result["joint"]["auc"]["why"]
    report = render_report(result)
    assert "not fitted — this sweep did not vary" in report and "needs at least 3 model sizes" in report


def test_a_bend_is_reported_and_only_the_points_before_it_are_fitted(tmp_path):
    manifest = json.loads((_manifest(tmp_path, grades=6, fractions=(0.25, 0.5, 1.0)) / "manifest.json").read_text())
    for point in manifest["points"].values():
        if point.get("grade") == 5:  # the largest model overfits: worse than grade 4 at every data size
            point["metrics"]["test_logloss"] += 0.05
            point["metrics"]["test_auc"] -= 0.05
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = fit_sweep(tmp_path, n_bootstrap=0)
    fit = result["per_axis"]["logloss_vs_params_encoder"]
    assert fit["bend"]["best_x"] == pytest.approx(1e4 * 4**4)
    assert fit["n_points"] == 5 and fit["coefficients"]["alpha"] == pytest.approx(0.3, rel=0.1)
    assert "the law bends" in render_report(result)
    assert result["per_axis"]["logloss_vs_train_samples"]["bend"] is None  # more data still helps


def test_no_allocation_is_made_up_when_model_size_does_not_matter(tmp_path):
    manifest = json.loads((_manifest(tmp_path) / "manifest.json").read_text())
    for point in manifest["points"].values():
        if point["status"] == "done":  # only the data term left: the N exponent cannot be identified
            point["metrics"]["test_logloss"] = 0.40 + 20.0 / point["metrics"]["train_samples"] ** 0.35
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = fit_sweep(tmp_path, n_bootstrap=0)
    assert result["joint"]["logloss"]["at_bound"] == ["alpha"]
    assert "skipped" in result["compute_optimal"]["logloss"]
    assert "would be made up" in result["compute_optimal"]["logloss"]["why"]
    assert "no power law identified" in render_report(result)


def test_sequence_length_is_its_own_axis_and_n_is_the_encoder_without_its_head(tmp_path):
    points = {}
    for g in range(4):  # grades at their own L: encoder grows 4x per grade, the head is a constant 1e5
        for f in (0.25, 0.5, 1.0):
            enc, d = 1e4 * 4**g, 1e6 * f
            loss = 0.40 + 3.0 / enc**0.3 + 20.0 / d**0.35 + 0.5 / 50**0.5
            metrics = {"params_dense": enc + 1e5, "params_encoder": enc, "params_head": 1e5, "seq_len": 50,
                       "flops_per_sample": 30 * enc, "train_samples": d, "test_logloss": loss, "test_auc": 1.3 - loss}
            points[point_name(g, f, 0)] = {"grade": g, "fraction": f, "seed": 0, "seq_len_set": 0, "status": "done",
                                           "wall_s": 1.0, "metrics": metrics}
    for n in (25, 100, 200, 400):  # the largest grade at full data read more (or fewer) behaviours
        enc = 1e4 * 4**3
        loss = 0.40 + 3.0 / enc**0.3 + 20.0 / 1e6**0.35 + 0.5 / n**0.5
        metrics = {"params_dense": enc + 1e5, "params_encoder": enc, "params_head": 1e5, "seq_len": n,
                   "flops_per_sample": 30 * enc * n / 50, "train_samples": 1e6, "test_logloss": loss, "test_auc": 1.3 - loss}
        points[point_name(3, 1.0, 0, n)] = {"grade": 3, "fraction": 1.0, "seed": 0, "seq_len_set": n, "status": "done",
                                            "wall_s": 1.0, "metrics": metrics}
    (tmp_path / "manifest.json").write_text(json.dumps({"points": points}))
    result = fit_sweep(tmp_path, n_bootstrap=0)
    # the size axis sees the encoder's own growth (4 grades, own L only), not the head-diluted dense count
    size = result["per_axis"]["logloss_vs_params_encoder"]
    assert size["n_points"] == 4 and size["coefficients"]["alpha"] == pytest.approx(0.3, rel=0.05)
    # the L axis: 4 lengths set plus the grade's own 50, at the largest grade and fraction
    length = result["per_axis"]["logloss_vs_seq_len"]
    assert length["n_points"] == 5 and length["coefficients"]["alpha"] == pytest.approx(0.5, rel=0.05)
    assert result["joint"]["logloss"]["coefficients"]["alpha"] == pytest.approx(0.3, rel=0.05)
    assert "| 3 | 400 | 1 |" in render_report(result)
    # the data each dense weight sees, the usual reason a size axis saturates: 1e6 rows / (640k + 100k) weights
    assert f"| {1e6:,.0f} | {1e6 / (1e4 * 4**3 + 1e5):.3g} |" in render_report(result)


def test_an_l_shaped_sweep_fits_both_laws(tmp_path):
    """Grades 0-3 at full data plus grade 0 at four data sizes (the demo's cheap shape): both axes fitted."""
    points = {}
    for g, f in [(g, 1.0) for g in range(4)] + [(0, f) for f in (0.125, 0.25, 0.5)]:
        n, d = 1e4 * 4**g, 1e6 * f
        loss = 0.40 + 3.0 / n**0.3 + 20.0 / d**0.35
        metrics = {"params_encoder": n, "params_dense": n, "flops_per_sample": 30 * n, "train_samples": d,
                   "test_logloss": loss, "test_auc": 1.3 - loss}
        points[point_name(g, f, 0)] = {"grade": g, "fraction": f, "seed": 0, "status": "done", "wall_s": 1.0,
                                       "metrics": metrics}
    (tmp_path / "manifest.json").write_text(json.dumps({"points": points}))
    result = fit_sweep(tmp_path, n_bootstrap=0)
    size, data = result["per_axis"]["logloss_vs_params_encoder"], result["per_axis"]["logloss_vs_train_samples"]
    assert size["n_points"] == 4 and data["n_points"] == 4  # data: grade 0's four sizes, not grade 3's one
    assert data["coefficients"]["alpha"] == pytest.approx(0.35, rel=0.1)


def test_a_searched_learning_rate_is_chosen_per_grade_on_valid_never_on_test(tmp_path):
    points = {}
    best_lr = {0: 3e-3, 1: 3e-3, 2: 1e-3, 3: 1e-3}  # planted: larger grades want a smaller rate
    for g in range(4):
        for lr in (1e-3, 3e-3, 1e-2):
            n, d = 1e4 * 4**g, 1e6
            loss = 0.40 + 3.0 / n**0.3 + 20.0 / d**0.35
            miss = abs(np.log(lr / best_lr[g]))  # 0 at the planted optimum
            # test logloss would pick 1e-2 everywhere: choosing on test would show here
            metrics = {"params_encoder": n, "flops_per_sample": 30 * n, "train_samples": d,
                       "valid_logloss": loss + 0.01 * miss, "test_logloss": loss + 0.01 * miss - (0.05 if lr == 1e-2 else 0),
                       "test_auc": 1.3 - loss}
            points[point_name(g, 1.0, 0, lr=lr)] = {"grade": g, "fraction": 1.0, "seed": 0, "lr_set": lr,
                                                    "status": "done", "wall_s": 1.0, "metrics": metrics}
    (tmp_path / "manifest.json").write_text(json.dumps({"points": points}))
    result = fit_sweep(tmp_path, n_bootstrap=0)
    chosen = {p["grade"]: p["lr_set"] for p in result["points"]}
    assert chosen == best_lr and len(result["lr_search"]) == 12
    # the fit sees one point per grade, each at its own best rate: the planted exponent comes back
    size = result["per_axis"]["logloss_vs_params_encoder"]
    assert size["n_points"] == 4 and size["coefficients"]["alpha"] == pytest.approx(0.3, rel=0.05)
    report = render_report(result)
    assert "## Learning rate per point" in report and "| 2 | nan | 1 | **0.001** |" in report
    assert (tmp_path / "plots" / "lr_search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_default_rate_point_joins_the_searched_rates_of_its_cell(tmp_path):
    """A size study at the sweep's --lr (lr_set 0) and a later study searching --lrs on the same folder: the
    point at the default rate is the middle of each grade's loss-vs-lr curve, and a point both studies
    trained counts once (one seed)."""
    points = {}
    for g in range(4):
        n = 1e4 * 4**g
        for lr in (0.0, 3e-4, 3e-3, 1e-3):  # 0.0: the size study's point; 1e-3 again: the search's own
            metrics = {"params_encoder": n, "flops_per_sample": 30 * n, "train_samples": 1e6,
                       "valid_logloss": 0.5 + 2.0 / n**0.3 + (0.0 if lr in (0.0, 1e-3) else 0.01),
                       "test_logloss": 0.5 + 2.0 / n**0.3, "test_auc": 0.7}
            entry = {"grade": g, "fraction": 1.0, "seed": 0, "lr_set": lr, "status": "done", "wall_s": 1.0,
                     "metrics": metrics}
            points[point_name(g, 1.0, 0, lr=lr) + ("-again" if lr == 1e-3 else "")] = entry
    (tmp_path / "manifest.json").write_text(json.dumps({"points": points, "config": {"lr": 1e-3}}))
    result = fit_sweep(tmp_path, n_bootstrap=0)
    assert {p["grade"]: (p["lr_set"], p["seeds"]) for p in result["points"]} == {g: (1e-3, 1) for g in range(4)}
    assert sorted({p["lr_set"] for p in result["lr_search"]}) == [3e-4, 1e-3, 3e-3]
    assert len(result["lr_search"]) == 12  # three rates a grade, the default rate's two points as one


def test_rates_are_compared_on_the_seeds_they_share(tmp_path):
    """lr 1e-3 ran seeds 0 and 1, lr 3e-3 seed 0 only: on seed 0, the one they share, 3e-3 is better; the mean
    of 1e-3 over its two seeds is lower only because seed 1 is an easier draw."""
    points = {}
    valid = {(1e-3, 0): 0.50, (1e-3, 1): 0.40, (3e-3, 0): 0.48}
    for g in range(4):
        n = 1e4 * 4**g
        for (lr, seed), v in valid.items():
            metrics = {"params_encoder": n, "flops_per_sample": 30 * n, "train_samples": 1e6,
                       "valid_logloss": v + 1.0 / n**0.3, "test_logloss": v, "test_auc": 0.7}
            points[point_name(g, 1.0, seed, lr=lr)] = {"grade": g, "fraction": 1.0, "seed": seed, "lr_set": lr,
                                                       "status": "done", "wall_s": 1.0, "metrics": metrics}
    (tmp_path / "manifest.json").write_text(json.dumps({"points": points}))
    result = fit_sweep(tmp_path, n_bootstrap=0)
    assert {p["grade"]: (p["lr_set"], p["seeds"]) for p in result["points"]} == {g: (3e-3, 1) for g in range(4)}


def test_the_datas_bayes_limit_bounds_every_law_where_its_stats_record_one(tmp_path):
    """A sweep of a synthetic world: its prepared folder's stats.json gives the test oracle, and no law (per
    axis or joint, logloss or AUC) is fitted past it; a sweep whose data has no oracle is fitted as before."""
    (tmp_path / "sweep").mkdir()
    sweep = _manifest(tmp_path / "sweep", grades=4, fractions=(0.125, 0.25, 0.5, 1.0))
    data = tmp_path / "data"
    data.mkdir()
    (data / "stats.json").write_text(json.dumps({"splits": {"test": {"oracle_logloss": 0.40, "oracle_auc": 0.92}}}))
    manifest = json.loads((sweep / "manifest.json").read_text())
    (sweep / "manifest.json").write_text(json.dumps({**manifest, "config": {"data": str(data), "lr": 1e-3}}))
    result = fit_sweep(sweep, n_bootstrap=10)
    assert result["known_floor"] == {"logloss": 0.40, "auc": pytest.approx(0.08)}
    for fit in (result["per_axis"]["logloss_vs_params_encoder"], result["joint"]["logloss"]):
        assert fit["coefficients"]["E"] >= 0.40 and fit["ci"]["E"][0] >= 0.40 and fit["known_floor"] == 0.40
    assert result["joint"]["auc"]["coefficients"]["AUC_inf"] <= 0.92 + 1e-12
    assert "**The data's Bayes limit on test** (its oracle): logloss 0.4000, auc 0.9200" in render_report(result)
    (data / "stats.json").unlink()
    assert fit_sweep(sweep, n_bootstrap=0)["known_floor"] == {}


def test_points_their_budget_ended_are_named_and_the_others_are_not(tmp_path):
    manifest = json.loads((_manifest(tmp_path, grades=4, fractions=(1.0,)) / "manifest.json").read_text())
    for point in manifest["points"].values():
        if point["status"] == "done":  # grade 2 ran to its --max-epochs still improving, the rest stopped early
            point["metrics"]["stopped_early"] = 0.0 if point["grade"] == 2 else 1.0
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    report = render_report(fit_sweep(tmp_path, n_bootstrap=0))
    assert "Ended by their budget, not by early stopping**: grade 2 at fraction 1 (1 of 1 seed)." in report
    for point in manifest["points"].values():
        point.get("metrics", {}).pop("stopped_early", None)  # a manifest from before the record: nothing claimed
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert "Ended by their budget" not in render_report(fit_sweep(tmp_path, n_bootstrap=0))
