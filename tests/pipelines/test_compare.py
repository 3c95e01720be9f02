"""``suan compare`` with model variants: spec parsing, one run per variant x seed, the summary table."""

from __future__ import annotations

import json

import pytest

from pipelines.args import CompareArgs, parse_variant
from pipelines.compare import epochs_below, floor_note, run_compare, run_name, summarise, table
from suan.utils.config import ConfigError


def test_parse_variant_types_fields_and_keeps_colons_in_values():
    assert parse_variant("suan") == ("suan", {})
    assert parse_variant("suan:mixer=aaren/dropout=0.1/layer_router=true") == (
        "suan", {"mixer": "aaren", "dropout": 0.1, "layer_router": True})
    assert parse_variant("suan:ablate=fixed:0") == ("suan", {"ablate": "fixed:0"})
    assert parse_variant("suan:bucket_by_length=yes") == ("suan", {"bucket_by_length": True})
    assert run_name("suan:ablate=fixed:0") == "suan-ablate-fixed-0"
    # every training field is addressable, typed from the dataclass (no hand-kept list to forget one)
    assert parse_variant("dnn:grad_clip=5/precision=bf16-mixed/pool_history=false/embedding_lr=3e-3") == (
        "dnn", {"grad_clip": 5.0, "precision": "bf16-mixed", "pool_history": False, "embedding_lr": 3e-3})


@pytest.mark.parametrize(("spec", "reason"), [("gpt", "architecture"), ("suan:grade=1", "field=value"), ("suan:out=elsewhere", "field=value"),
                                              ("suan:mixer", "field=value"), ("suan:dilation=two", "dilation")])
def test_bad_variants_are_rejected_with_the_reason(spec, reason):
    with pytest.raises(ConfigError, match=reason):
        CompareArgs(data="d", out="o", models=(spec,))


def test_compare_trains_each_variant_with_its_options(tiny_synthetic, tmp_path):
    specs = ("suan", "suan:mixer=linear_attn")
    summary = run_compare(CompareArgs(data=str(tiny_synthetic / "data"), out=str(tmp_path), models=specs, seeds=(0,),
                                      grade=0, max_epochs=1))
    assert set(summary) == set(specs)
    mixers = [json.loads((tmp_path / "runs" / f"{run_name(s)}-g0-s0" / "model_config.json").read_text())["mixer"]
              for s in specs]
    assert mixers == ["softmax_rel", "linear_attn"]
    assert all(row["samples_per_second"] > 0 and 0 < row["test_auc"]["mean"] < 1 for row in summary.values())
    table = (tmp_path / "comparison.md").read_text()
    assert "suan:mixer=linear_attn" in table and "±" not in table  # one seed: no spread to show
    assert "popularity ranking" in table and (tmp_path / "curves.png").stat().st_size > 10_000
    assert "above popularity ranking at every epoch of all 2 runs" in table or "below popularity ranking" in table
    # valid AUC per history-length bucket, per model: the buckets cover every valid row once
    lengths = json.loads((tmp_path / "by_history_length.json").read_text())
    valid_rows = json.loads((tiny_synthetic / "data" / "stats.json").read_text())["splits"]["valid"]["rows"]
    assert set(lengths) == set(specs) and all(sum(b["rows"] for b in rows) == valid_rows for rows in lengths.values())
    assert all(0 < b["auc"] < 1 for rows in lengths.values() for b in rows if b["rows"] >= 50)
    assert "valid AUC by behaviours read" in table and "| 3–5 |" in table


def test_compare_trains_on_the_requested_share_of_rows(tiny_synthetic, tmp_path):
    def train_samples(out, **shares):
        run_compare(CompareArgs(data=str(tiny_synthetic / "data"), out=str(out), models=("suan",), seeds=(0,),
                                grade=0, max_epochs=1, **shares))
        return json.loads((out / "runs" / "suan-g0-s0" / "metrics.json").read_text())["train_samples"]

    full, half = train_samples(tmp_path / "full"), train_samples(tmp_path / "half", data_fraction=0.5, eval_fraction=0.5)
    assert 0.4 * full < half < 0.6 * full
    assert "train rows × 0.5" in (tmp_path / "half" / "comparison.md").read_text()


def test_compare_rejects_an_empty_share():
    with pytest.raises(ConfigError, match="data_fraction"):
        CompareArgs(data="d", out="o", data_fraction=0.0)


def test_the_difference_to_the_baseline_is_paired_by_seed(tmp_path):
    def metrics(auc):
        return {"params_dense": 1, "flops_per_sample": 1, "samples_per_second": 1.0, "test_auc": auc,
                "test_gauc": auc, "test_logloss": 0.5, "valid_auc": auc}

    base, gain = [0.70, 0.72, 0.74], [0.010, 0.012, 0.008]  # seed-to-seed spread shared by both models
    runs = {"suan": dict(enumerate(metrics(x) for x in base)),
            "dnn": dict(enumerate(metrics(x + g) for x, g in zip(base, gain, strict=True)))}
    summary = summarise(runs, baseline="suan")
    assert "delta_test_auc" not in summary["suan"]
    delta = summary["dnn"]["delta_test_auc"]
    assert delta["mean"] == pytest.approx(0.010) and delta["sd"] == pytest.approx(0.002)
    assert summary["dnn"]["test_auc"]["sd"] > 5 * delta["sd"]  # unpaired spread hides the gap
    text = table(summary, CompareArgs(data=str(tmp_path), out=str(tmp_path), models=("suan", "dnn")))
    assert "Δ test AUC vs suan, paired by seed" in text and "+0.0100 ± 0.0020" in text


def test_no_train_tabulates_the_finished_runs_and_pairs_over_shared_seeds(tmp_path, monkeypatch):
    import pipelines.compare

    monkeypatch.setattr(pipelines.compare, "run_train", lambda a: pytest.fail(f"trained {a.out}"))
    finished = {("suan", 0): 0.70, ("suan", 1): 0.72, ("suan", 2): 0.74, ("bst", 0): 0.69, ("bst", 2): 0.75}
    for (spec, seed), auc in finished.items():
        run = tmp_path / "runs" / f"{spec}-g2-s{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(
            {"params_dense": 1, "flops_per_sample": 1, "samples_per_second": 1.0, "test_auc": auc, "test_gauc": auc,
             "test_logloss": 0.5, "valid_auc": auc}))
    args = CompareArgs(data=str(tmp_path), out=str(tmp_path), models=("suan", "bst"), seeds=(0, 1, 2), grade=2,
                       train=False)
    summary = run_compare(args)
    assert summary["bst"]["seeds"] == 2 and summary["bst"]["paired_seeds"] == 2
    assert summary["bst"]["delta_test_auc"]["mean"] == pytest.approx(0.0)  # -0.01 on seed 0, +0.01 on seed 2
    assert summary["bst"]["delta_test_auc"]["sd"] == pytest.approx(0.01 * 2 ** 0.5)
    text = (tmp_path / "comparison.md").read_text()
    assert "not finished, left out (--no-train): bst seed 1" in text
    with pytest.raises(ConfigError, match="no finished run"):
        run_compare(CompareArgs(data=str(tmp_path), out=str(tmp_path), models=("din",), seeds=(0,), train=False))


def test_epochs_below_popularity_are_named(tmp_path):
    args = CompareArgs(data=str(tmp_path), out=str(tmp_path), models=("suan", "din"), seeds=(0, 1), grade=2)
    curves = {("suan", 0): [0.71, 0.75], ("suan", 1): [0.70, 0.74], ("din", 0): [0.72, 0.76], ("din", 1): [0.66, 0.73]}
    for (spec, seed), aucs in curves.items():
        run = tmp_path / "runs" / f"{spec}-g2-s{seed}"
        run.mkdir(parents=True)
        (run / "curve.json").write_text(json.dumps([{"epoch": e, "valid_auc": a} for e, a in enumerate(aucs)]))
    below = epochs_below(tmp_path, args, floor=0.6922)
    assert below == [{"model": "din", "seed": 1, "epoch": 0, "valid_auc": 0.66}]
    assert "din seed 1 epoch 0: 0.6600" in floor_note(below, args)
    assert epochs_below(tmp_path, args, floor=0.65) == []
    assert floor_note([], args) == "valid AUC above popularity ranking at every epoch of all 4 runs"
