"""Command-line plumbing: one-line errors, exit codes, --debug tracebacks, --help everywhere."""

from __future__ import annotations

import pytest
import typer
from rcml_st.cli import _common
from rcml_st.cli.main import app
from typer.testing import CliRunner

from rcml_st.errors import InputDataError, ServiceError, UsageError

runner = CliRunner()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputDataError("bad JSON", path="data.jsonl", line=3), 2),
        (UsageError("--epochs must be positive"), 2),
        (ValueError("item 0: empty text"), 2),
        (FileNotFoundError("no such file: x.jsonl"), 2),
        (ServiceError("Qdrant at http://x unreachable after 5 retries"), 1),
        (RuntimeError("CUDA out of memory"), 1),
    ],
)
def test_errors_become_one_line_and_an_exit_code(error, code, capsys, monkeypatch):
    monkeypatch.delenv("RCML_ST_DEBUG", raising=False)
    _common.set_debug(False)

    def body():
        raise error

    with pytest.raises(typer.Exit) as info:
        _common.run_command(body)
    assert info.value.exit_code == code
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_input_errors_name_file_and_line(capsys):
    with pytest.raises(typer.Exit):
        _common.run_command(lambda: (_ for _ in ()).throw(InputDataError("duplicate id 'B1'", "d.jsonl", 7)))
    assert capsys.readouterr().err == "Error: d.jsonl:7: duplicate id 'B1'\n"


def test_debug_prints_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("RCML_ST_DEBUG", "1")

    def body():
        raise RuntimeError("boom")

    with pytest.raises(typer.Exit):
        _common.run_command(body)
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("Error: boom")


def test_interrupt_exits_130_with_a_resume_hint(capsys):
    def body():
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as info:
        _common.run_command(body)
    assert info.value.exit_code == 130
    assert "resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["train"], ["evaluate"], ["index"], ["search"], ["demo"], ["prepare", "amazon"]]
)
def test_every_command_has_help_with_examples(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "Usage" in result.output
