"""The RCML model card: written on every save, path-free, and its usage snippet runs."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from huggingface_hub import HfApi

import rcml_st
from rcml_st.data import generate_catalog
from rcml_st.training import TrainConfig, train

# An absolute path: "/" + a name + "/", not part of a URL ("https://host/...") or a relative path.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.-]+/")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny model trained by `train()` with --eval (so the card has an evaluation table)."""
    root = tmp_path_factory.mktemp("card")
    data = generate_catalog(root / "data", n_items=120, seed=2, image_size=32)
    config = TrainConfig(
        data=data.train_path,
        output=root / "rcml-baby",
        backbone="rcml-tiny",
        epochs=1,
        batch_size=16,
        lr=1e-3,
        pairs_per_epoch=32,
        eval_file=data.test_path,
        device="cpu",
    )
    return train(config).output


def _usage_snippet(card: str) -> str:
    usage = card[card.index("## Usage") :]
    return re.search(r"```python\n(.*?)```", usage, re.S).group(1)


def test_a_trained_model_card_is_the_rcml_card_without_local_paths(trained):
    card = (trained / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "library_name: sentence-transformers" in card
    for relation in rcml_st.relation_vocabulary(rcml_st.load(trained)):
        assert f"- `{relation}`" in card
    assert "trust_remote_code=True" in card and "rcml_st.load(" in card and "relation=" in card
    assert "rcml-st index catalog.jsonl --model" in card
    assert "**Backbone:** open_clip `rcml-tiny`" in card and "none (random initialisation)" in card
    assert "on `train.jsonl`: 90 items" in card and "| `matches in colour` |" in card
    # The --eval table: RCML and both baselines, per direction.
    for row in ("| **RCML** (this model) |", "| `clip`: ", "| `product`: "):
        assert row in card
    assert "| method | text→text | image→image | text→image | image→text | average |" in card
    assert "`rcml-st>=0.1`" in card and "`open_clip_torch>=3.0`" in card
    assert "arXiv:2508.17497" in card and "Qiao and Hu and Zhu and Haque and Zhao" in card
    front_matter = card.split("---")[1]
    assert "pipeline_tag: feature-extraction" in front_matter and "- rcml" in front_matter
    assert "The weather is lovely today" not in card and "widget:\n- text: " in front_matter
    assert str(trained.parent) not in card and not ABSOLUTE_PATH.findall(card), ABSOLUTE_PATH.findall(card)


def test_the_cards_usage_snippet_runs_as_written(trained, monkeypatch):
    """The snippet names the model's folder (not a placeholder, not a local path) and runs unchanged
    from the folder that holds the model."""
    snippet = _usage_snippet((trained / "README.md").read_text(encoding="utf-8"))
    assert 'SentenceTransformer("rcml-baby", trust_remote_code=True)' in snippet
    assert "sentence_transformers_model_id" not in snippet and str(trained.parent) not in snippet
    monkeypatch.chdir(trained.parent)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["embeddings"].shape == (3, 32)
    assert namespace["query"].shape == (1, 32) and namespace["plain"].shape == (3, 32)
    assert not np.allclose(namespace["embeddings"], namespace["plain"])  # the relation changes it


def test_save_pretrained_and_push_to_hub_write_the_rcml_card(tmp_path, monkeypatch):
    model = rcml_st.build_model("rcml-tiny", relations=["matches in colour"], device="cpu")
    model.save_pretrained(str(tmp_path / "saved"))
    assert "`matches in colour`" in (tmp_path / "saved" / "README.md").read_text(encoding="utf-8")

    uploaded: dict[str, str] = {}

    def upload_folder(self, *, folder_path, **kwargs):
        uploaded["card"] = (Path(folder_path) / "README.md").read_text(encoding="utf-8")
        return SimpleNamespace(commit_url="https://huggingface.co/org/rcml-baby/commit/0")

    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kwargs: SimpleNamespace(repo_id=repo_id)
    )
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model.push_to_hub("org/rcml-baby", replace_model_card=True)
    card = uploaded["card"]
    assert 'SentenceTransformer("org/rcml-baby", trust_remote_code=True)' in card
    assert 'rcml_st.load("org/rcml-baby")' in card and "--model org/rcml-baby" in card
    assert not ABSOLUTE_PATH.findall(card)
