"""Thread defaults: CPU affinity and cgroup quota respected, OMP_NUM_THREADS honoured, oversubscription named."""

from __future__ import annotations

import os

import pytest
import torch

from pipelines import threads


def test_cgroup_quota_reads_v2_and_v1_files(tmp_path):
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")
    assert threads.cgroup_quota(v2) == pytest.approx(1.5)
    v2.write_text("max 100000\n")
    assert threads.cgroup_quota(v2) is None
    quota, period = tmp_path / "q", tmp_path / "p"
    quota.write_text("-1")
    period.write_text("100000")
    assert threads.cgroup_quota(tmp_path / "absent", (quota, period)) is None
    quota.write_text("300000")
    assert threads.cgroup_quota(tmp_path / "absent", (quota, period)) == pytest.approx(3.0)
    assert threads.cgroup_quota(tmp_path / "absent", (tmp_path / "x", tmp_path / "y")) is None


def test_available_cores_is_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "cgroup_quota", lambda: 2.5)
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads, "cgroup_quota", lambda: 0.3)
    assert threads.available_cores() == 1
    monkeypatch.setattr(threads, "cgroup_quota", lambda: None)
    assert threads.available_cores() == 4


def test_default_threads_honours_an_explicit_environment(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 6)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.default_threads() == 6


def test_busy_machine_is_named_and_an_idle_one_is_not():
    assert threads.busy_message(threads=2, cores=2, load=0) is None
    assert threads.busy_message(threads=1, cores=2, load=1) is None
    message = threads.busy_message(threads=2, cores=2, load=1)
    assert message and "busy" in message and "1 other" in message


def test_set_threads_sets_torch_and_warns_when_oversubscribed(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "other_runnable", lambda: 3.0)
    try:
        with pytest.warns(RuntimeWarning, match="busy"):
            assert threads.set_threads(2) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_other_runnable_reads_a_snapshot_without_counting_itself(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 3/412 12345\n")
    assert threads.other_runnable(samples=2, loadavg=loadavg) == 2.0
