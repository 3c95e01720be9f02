"""The suan CLI: --help everywhere, typed options, a run end to end, errors as exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.cli import COMMANDS, main


def _paths(tree, prefix=()):
    for name, node in tree.items():
        if name == "__help__":
            continue
        yield (*prefix, name)
        if isinstance(node, dict):
            yield from _paths(node, (*prefix, name))


@pytest.mark.parametrize("path", list(_paths(COMMANDS)), ids=" ".join)
def test_help_everywhere(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert "usage: suan" in capsys.readouterr().out


def test_synth_prepare_describe_in_process(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "data"
    assert main(["data", "synth", "--out", str(raw), "--users", "40", "--events-per-user", "6"]) == 0
    assert json.loads((raw / "synth.json").read_text())["config"]["users"] == 40
    assert main(["data", "prepare", "--source", "synthetic", "--input", str(raw), "--out", str(out),
                 "--max-seq-len", "7", "--no-progress"]) == 0
    assert main(["data", "describe", str(out)]) == 0
    text = capsys.readouterr().out
    assert "protocol=time-split" in text and "L=7" in text
    assert (out / "prepare_config.yaml").exists()


def test_config_file_and_flags_override(tmp_path):
    raw = tmp_path / "raw"
    main(["data", "synth", "--out", str(raw), "--users", "30", "--events-per-user", "5"])
    cfg = tmp_path / "prep.yaml"
    cfg.write_text(f"source: synthetic\ninput: {raw}\nout: {tmp_path / 'a'}\nmax_seq_len: 3\nprogress: false\n")
    assert main(["data", "prepare", "--config", str(cfg), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "feature_map.json").exists() and not (tmp_path / "a").exists()
    assert json.loads((tmp_path / "b" / "feature_map.json").read_text())["max_seq_len"] == 3


def test_errors_exit_2_with_the_reason(tmp_path, capsys):
    bad = tmp_path / "e.csv"
    bad.write_text("user_id,item_id,timestamp\n1,2,-1\n")
    assert main(["data", "prepare", "--source", "events", "--input", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "row 1, field 'timestamp'" in err and "negative" in err
    assert not (tmp_path / "o").exists()
    assert main(["data", "prepare", "--source", "events", "--input", str(bad)]) == 2
    assert "missing required option(s): --out" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "pipelines", "data", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout


def test_features_import_no_torch():
    code = "import sys, features.prepare, features.collate, features.sources.synthetic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unknown_mixer_exits_2_naming_the_registered_ones(tmp_path, capsys):
    from pipelines.cli import main
    from suan.mixers.registry import MIXERS

    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--mixer", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown mixer 'bogus'" in err and all(name in err for name in MIXERS)
    assert not (tmp_path / "run").exists()
    assert main(["compare", "--data", str(tmp_path), "--out", str(tmp_path / "c"), "--models", "suan:mixer=nope"]) == 2
    assert "unknown mixer 'nope'" in capsys.readouterr().err
