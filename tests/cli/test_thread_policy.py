"""The OpenMP wait policy of a training process follows how busy the CPUs are."""

from __future__ import annotations

import os
import sys

import pytest
from rcml_st.cli import _common


@pytest.fixture
def before_torch(monkeypatch):
    """As in a fresh `rcml-st train` process: no policy set, torch not imported yet."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # restored after the test


def test_busy_cpus_get_passive_waits_and_idle_ones_the_default(before_torch, monkeypatch):
    cpus = os.cpu_count() or 1
    monkeypatch.setattr(_common, "_cpu_busy_by_others", lambda: 0.6 * cpus)
    assert _common.thread_wait_policy() == {"OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setattr(_common, "_cpu_busy_by_others", lambda: 0.3 * cpus)
    assert _common.thread_wait_policy() == {}
    monkeypatch.setattr(_common, "_cpu_busy_by_others", lambda: None)  # no /proc/stat
    assert _common.thread_wait_policy() == {}


def test_several_local_training_processes_wait_passively(before_torch, monkeypatch):
    monkeypatch.setattr(_common, "_cpu_busy_by_others", lambda: 0.0)  # they all start at once
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun sets it
    assert _common.thread_wait_policy() == {"OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert _common.thread_wait_policy() == {}


def test_a_policy_the_user_set_is_kept(before_torch, monkeypatch):
    monkeypatch.setattr(_common, "_cpu_busy_by_others", lambda: float(os.cpu_count() or 1))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _common.choose_thread_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_nothing_changes_once_torch_is_imported(monkeypatch):
    import torch  # noqa: F401  (the policy is read when torch loads; too late to set it)

    monkeypatch.setattr(_common, "_cpu_busy_by_others", lambda: float(os.cpu_count() or 1))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _common.thread_wait_policy() == {}


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the probe reads Linux's /proc/stat")
def test_the_probe_measures_a_share_of_the_cpus():
    busy = _common._cpu_busy_by_others(0.02)
    assert busy is not None and 0.0 <= busy <= (os.cpu_count() or 1)
