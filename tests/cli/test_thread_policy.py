"""Training process settings: the OpenMP wait policy follows the CPUs' load; malloc keeps freed memory."""

from __future__ import annotations

import os
import platform
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


_FREED_AFTER = """
import ctypes, sys
from rcml_st.training import memory
applied = memory.keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL("libc.so.6")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
block = libc.malloc(64 << 20)  # a 64 MiB tensor's worth: mmap'd by default (over the 32 MiB maximum)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(applied, mapped >= 64 << 20, libc.mallinfo2().fordblks >= 64 << 20)
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_freed_memory_stays_in_the_heap_for_the_next_step(monkeypatch):
    import subprocess

    from rcml_st.training import memory

    for name in memory._MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)

    def run(mode: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", _FREED_AFTER, mode], capture_output=True, text=True, check=True
        ).stdout.split()

    # Default glibc: the block is its own mapping, unmapped when freed (nothing kept).
    assert run("default") == ["None", "True", "False"]
    # Kept: served from the heap, and still there, free, after it is freed.
    assert run("keep") == ["True", "False", "True"]
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")  # the user's own setting wins
    assert run("keep") == ["False", "True", "False"]
