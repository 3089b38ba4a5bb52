"""train(): end to end on the tiny model: saved model, checkpoints, seeds, resume, ablations, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

import rcml_st
from rcml_st.errors import InputDataError, UsageError
from rcml_st.training import run as run_module
from rcml_st.training import train
from rcml_st.training.checkpoints import checkpoints_dir


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_trains_saves_a_loadable_model_with_its_vocabulary_and_epoch_checkpoints(quick_config, synthetic):
    config = quick_config()
    lines: list[str] = []
    result = train(config, log=lines.append)
    out = config.output
    assert result.epochs == 2 and [round(h["epoch"]) for h in result.history] == [1, 2]
    assert all({"loss", "loss_tt", "loss_ii", "loss_ti", "loss_it"} <= set(h) for h in result.history)
    assert any(line.startswith("epoch 1/2  loss") for line in lines)
    assert not (out / "checkpoints").exists()  # next to the model, not inside it
    assert sorted(p.name for p in checkpoints_dir(out).glob("checkpoint-*")) == [
        "checkpoint-3",
        "checkpoint-6",
    ]

    model = rcml_st.load(out)
    assert rcml_st.relation_vocabulary(model) == sorted(synthetic.relations)
    plain = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    item = {"text": "Oakbud crib mobile, navy"}
    a = model.encode([item], relation="matches in colour")
    b = plain.encode([item], relation="matches in colour")
    assert a.shape == (1, 32) and torch.allclose(torch.from_numpy(a), torch.from_numpy(b), atol=1e-6)
    assert (out / "README.md").is_file()


def test_same_seed_same_model_other_seed_other_model(quick_config, tmp_path, saved_weights):
    first = train(quick_config(output=tmp_path / "a", epochs=1)).output
    second = train(quick_config(output=tmp_path / "b", epochs=1)).output
    third = train(quick_config(output=tmp_path / "c", epochs=1, seed=1)).output
    assert _same(saved_weights(first), saved_weights(second))
    assert not _same(saved_weights(first), saved_weights(third))


class _InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def test_interrupted_after_epoch_one_resume_matches_an_uninterrupted_run(
    quick_config, tmp_path, saved_weights
):
    config = quick_config(output=tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_InterruptAfterFirstSave()])
    assert not (config.output / "modules.json").exists()  # no final model yet
    assert (checkpoints_dir(config.output) / "checkpoint-3").is_dir()
    with pytest.raises(UsageError, match="add --resume"):
        train(config)
    with pytest.raises(UsageError, match="another run"):
        train(dataclasses.replace(config, resume=True, lr=1e-4))
    lines: list[str] = []
    result = train(dataclasses.replace(config, resume=True), log=lines.append)
    assert result.resumed_from == 1.0
    assert any("resuming from checkpoint-3 (epoch 1 of 2)" in line for line in lines)
    assert [round(h["epoch"]) for h in result.history] == [2]  # only epoch 2 ran here
    straight = train(quick_config(output=tmp_path / "straight")).output
    assert _same(saved_weights(config.output), saved_weights(straight))


def test_resume_without_checkpoints_starts_from_the_beginning(quick_config):
    lines: list[str] = []
    result = train(quick_config(resume=True, epochs=1), log=lines.append)
    assert result.resumed_from is None and any("no checkpoint" in line for line in lines)


def test_no_conditioning_gives_the_relation_agnostic_baseline(quick_config, tmp_path):
    out = train(quick_config(output=tmp_path / "base", conditioning=False, epochs=1)).output
    model = rcml_st.load(out)
    assert model[1].beta == 1.0
    item = [{"text": "Nestling sleep sack, coral"}]
    colour = model.encode(item, relation="matches in colour")
    brand = model.encode(item, relation="made by the same brand")
    assert torch.allclose(torch.from_numpy(colour), torch.from_numpy(brand), atol=1e-6)
    conditioned = rcml_st.load(train(quick_config(output=tmp_path / "rcml", epochs=1)).output)
    a = conditioned.encode(item, relation="matches in colour")
    b = conditioned.encode(item, relation="made by the same brand")
    assert not torch.allclose(torch.from_numpy(a), torch.from_numpy(b), atol=1e-3)


def test_freeze_projections_trains_only_the_pooling(quick_config, tmp_path, tiny_clip_config, saved_weights):
    torch.manual_seed(0)
    initial = rcml_st.build_model(tiny_clip_config, device="cpu")
    initial.save_pretrained(str(tmp_path / "initial"))
    out = train(quick_config(output=tmp_path / "frozen", freeze_projections=True, epochs=1)).output
    before, after = saved_weights(tmp_path / "initial"), saved_weights(out)
    backbone = [k for k in before if not k.startswith("pooling.")]
    pooling = [k for k in before if k.startswith("pooling.")]
    assert all(torch.equal(before[k], after[k]) for k in backbone)
    assert any(not torch.equal(before[k], after[k]) for k in pooling)


def test_ablations_change_the_terms_and_the_pairs(quick_config, tmp_path):
    no_intra = train(quick_config(output=tmp_path / "ni", intra_modal=False, epochs=1))
    assert "loss_tt" not in no_intra.history[0] and "loss_ti" in no_intra.history[0]
    only_own = train(quick_config(output=tmp_path / "ns", inter_sample=False, epochs=1, pairs_per_epoch=None))
    assert only_own.pairs.startswith("60 pairs (60 intra-sample, 0 inter-sample)")


def test_eval_file_reports_retrieval_each_epoch(quick_config, synthetic):
    lines: list[str] = []
    # The 60 training items leave every query 20 unrelated negatives (the 20 held-out ones do not).
    result = train(quick_config(eval_file=synthetic.train_path, epochs=1), log=lines.append)
    assert any(line.startswith("  eval: hit@5 ") for line in lines)
    assert 0.0 <= result.history[0]["eval_avg_hit@5"] <= 1.0


def test_an_eval_file_too_small_for_20_negatives_is_refused_before_training(
    quick_config, synthetic, monkeypatch
):
    monkeypatch.setattr(run_module, "_build_model", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(UsageError, match="no query gets 20 negatives"):
        train(quick_config(eval_file=synthetic.test_path))


def test_bad_data_fails_before_any_model_is_built(quick_config, tmp_path, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "A", "text": "bib"}\n{"id": "A", "text": "cup"}\n')

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built for bad data")

    monkeypatch.setattr(run_module, "_build_model", no_model)
    with pytest.raises(InputDataError, match=r"bad.jsonl:2: duplicate id 'A'"):
        train(quick_config(data=bad))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"conditioning": False, "beta": 0.3}, "--no-conditioning means beta = 1"),
        ({"conditioning": False, "freeze_projections": True}, "nothing to train"),
        ({"batch_size": 1}, "--batch-size"),
        ({"lr": -1.0}, "--lr"),
        ({"pairs_per_epoch": 4}, "--pairs-per-epoch"),
        ({"backbone": "rcml-tiny", "pretrained": "weights.pt"}, "drop --pretrained"),
    ],
)
def test_bad_options_are_usage_errors(quick_config, changes, message):
    with pytest.raises(UsageError, match=message):
        train(quick_config(**changes))


def test_a_local_weights_file_is_the_starting_point(quick_config, tmp_path, tiny_clip_config, saved_weights):
    # Fine-tuning path: --pretrained FILE loads open_clip weights before training.
    import open_clip

    from rcml_st.modules.backbone import create_backbone

    torch.manual_seed(123)
    source = create_backbone(tiny_clip_config).model
    weights_file = tmp_path / "tiny-weights.pt"
    torch.save(source.state_dict(), weights_file)
    out = train(
        quick_config(output=tmp_path / "ft", pretrained=str(weights_file), freeze_projections=True, epochs=1)
    ).output
    trained = saved_weights(out)
    expected = open_clip.create_model(f"local-dir:{out}").state_dict()  # the saved backbone
    reference = source.state_dict()
    assert all(torch.equal(reference[k], expected[k]) for k in reference)  # frozen: still the file's
    assert any(k.startswith("pooling.") for k in trained)
