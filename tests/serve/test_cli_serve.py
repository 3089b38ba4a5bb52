"""``rcml-st serve`` as a user runs it: on the embedded store the demo writes, and its bad options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import generate_catalog, read_catalog
from rcml_st.index import RelationIndex, index_catalog
from rcml_st.index._testing import free_port

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A model and an embedded store indexed with it and closed again, as `rcml-st demo` leaves them."""
    root = tmp_path_factory.mktemp("embedded")
    synth = generate_catalog(root / "data", n_items=24, holdout=0, seed=2, image_size=32)
    torch.manual_seed(0)
    model = rcml_st.build_model(FIXTURES / "tiny-clip.json", device="cpu")
    rcml_st.set_relation_vocabulary(model, list(synth.relations))
    model.save_pretrained(str(root / "model"))
    with RelationIndex.connect(path=root / "qdrant") as index:
        index_catalog(model, read_catalog(synth.train_path), index)
    return root


def run_cli(*args: str):
    return CliRunner().invoke(app, ["serve", *args])


def test_help_names_the_page_and_the_api():
    listing = CliRunner().invoke(app, ["--help"])
    assert listing.exit_code == 0 and "serve" in listing.output
    result = run_cli("--help")
    assert result.exit_code == 0
    for words in ("--api-key", "--host", "--port", "--max-upload-mb", "/api/search", "offline"):
        assert words in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--qdrant-url", "http://127.0.0.1:1", "--qdrant-path", "x"], "not both"),
        (["--qdrant-path", "no-such-store"], "no embedded Qdrant store"),
        (["--qdrant-path", "QDRANT", "--api-key", " "], "--api-key"),
    ],
)
def test_bad_options_fail_with_one_line_and_exit_2(embedded, extra, message):
    extra = [str(embedded / "qdrant") if arg == "QDRANT" else arg for arg in extra]
    result = run_cli("--model", str(embedded / "model"), *extra)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def test_a_missing_model_fails_with_exit_2(embedded):
    result = run_cli("--model", str(embedded / "nope"), "--qdrant-path", str(embedded / "qdrant"))
    assert result.exit_code == 2 and "Error:" in result.output


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_serves_the_embedded_store_holds_its_lock_and_releases_it_on_ctrl_c(embedded):
    port = free_port()
    command = [sys.executable, "-m", "rcml_st.cli.main", "serve", "--model", str(embedded / "model")]
    command += ["--qdrant-path", str(embedded / "qdrant"), "--port", str(port)]
    env = {**os.environ, "RCML_ST_API_KEY": ""}
    env.pop("RCML_ST_API_KEY")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120  # a bound on start-up (model load), not a timing assertion
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/api/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "rcml-st serve did not start"
                time.sleep(0.5)
        assert status == 200 and body["qdrant"] is True
        status, body = _get(f"http://127.0.0.1:{port}/api/search?id=S0003&limit=3")
        assert status == 200 and len(body["results"]) == 3

        # While it serves, the store is locked: a second server says so in one line.
        second = subprocess.run(
            [*command[:-1], str(free_port())], capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 2
        assert "in use by another process" in second.stderr and second.stderr.count("\n") == 1, second.stderr
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    with RelationIndex.connect(path=embedded / "qdrant") as index:  # released: opens again
        assert index.count() == 24 * 3
