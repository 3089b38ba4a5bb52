"""Frozen-trunk training: the trunk cache gives the uncached losses, is reused and rebuilt as it should."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from sentence_transformers.base.data_collator import BaseDataCollator
from transformers import TrainerCallback

import rcml_st
from rcml_st.data import read_catalog
from rcml_st.losses import RCMLLoss
from rcml_st.modules import OpenCLIPInput
from rcml_st.training import build_pairs, train
from rcml_st.training.frozen import cache_frozen_trunks, freeze_backbone
from rcml_st.training.trunk_cache import TrunkCache, dataset_items


@pytest.fixture
def trunk_calls(monkeypatch) -> dict[str, int]:
    """Rows sent through each trunk (counted while the fixture is active)."""
    calls = {"text": 0, "image": 0}
    originals = {"text": OpenCLIPInput.text_trunk, "image": OpenCLIPInput.image_trunk}

    def counting(modality):
        def run(self, inputs):
            calls[modality] += inputs.shape[0]
            return originals[modality](self, inputs)

        return run

    monkeypatch.setattr(OpenCLIPInput, "text_trunk", counting("text"))
    monkeypatch.setattr(OpenCLIPInput, "image_trunk", counting("image"))
    return calls


@pytest.fixture
def step_losses(monkeypatch, trunk_calls) -> list[tuple[float, int]]:
    """Per training step, in order: the total loss and the image rows the trunk saw in the step."""
    steps: list[tuple[float, int]] = []
    original = RCMLLoss.forward

    def recording(self, features, labels):
        images = trunk_calls["image"]
        terms = original(self, features, labels)
        steps.append((float(sum(terms.values()).detach()), trunk_calls["image"] - images))
        return terms

    monkeypatch.setattr(RCMLLoss, "forward", recording)
    return steps


def test_cached_and_uncached_frozen_training_give_the_same_loss_per_step(
    quick_config, tmp_path, tiny_clip_config, saved_weights, step_losses, trunk_calls
):
    torch.manual_seed(0)
    rcml_st.build_model(tiny_clip_config, device="cpu").save_pretrained(str(tmp_path / "initial"))
    runs = {}
    for name, cache in (("uncached", False), ("cached", True)):
        step_losses.clear()
        trunk_calls.update(text=0, image=0)
        lines: list[str] = []
        config = quick_config(output=tmp_path / name, freeze_backbone=True, trunk_cache=cache)
        runs[name] = (train(config, log=lines.append), list(step_losses), dict(trunk_calls), lines)

    _, uncached, _, _ = runs["uncached"]
    cached_run, cached, cached_calls, lines = runs["cached"]
    assert len(cached) == len(uncached) == 6  # 2 epochs x 3 steps
    assert max(abs(a - b) for (a, _), (b, _) in zip(cached, uncached, strict=True)) < 1e-4
    # The cached run sent each of the 60 items' images through the trunk once (the first pass)
    # and none during the steps; the uncached one ran the trunk at every step.
    assert cached_calls["image"] == 60 and all(images == 0 for _, images in cached)
    assert all(images > 0 for _, images in uncached)
    assert cached_calls["text"] <= 60 + 4  # item texts once, each relation description once
    assert any(line.startswith("trunk cache built: 60 texts, 60 images") for line in lines)

    # --freeze-backbone: trunks as they were; projections and pooling trained.
    before, after = saved_weights(tmp_path / "initial"), saved_weights(cached_run.output)
    uncached_after = saved_weights(tmp_path / "uncached")
    projections = {"text_projection", "visual.proj"}
    trained = {k for k in before if not torch.equal(before[k], after[k])}
    assert projections <= trained and any(k.startswith("pooling.") for k in trained)
    assert trained <= projections | {k for k in before if k.startswith("pooling.")}
    # (Adam turns float noise in near-zero gradients, e.g. the attention's key bias, into ~1e-4 steps.)
    assert all(torch.allclose(after[k], uncached_after[k], atol=1e-3) for k in after)


class _StopAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def test_a_resumed_frozen_run_reuses_the_cache_and_evaluates(quick_config, synthetic, step_losses):
    config = quick_config(freeze_backbone=True, eval_file=synthetic.train_path)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_StopAfterFirstSave()])
    step_losses.clear()
    lines: list[str] = []
    result = train(dataclasses.replace(config, resume=True), log=lines.append)
    assert any(line.startswith("trunk cache reused: 60 texts, 60 images") for line in lines)
    # Epoch 2's steps ran from the cache (the evaluation encodes its items the usual way).
    assert len(step_losses) == 3 and all(images == 0 for _, images in step_losses)
    assert 0.0 <= result.history[-1]["eval_avg_hit@5"] <= 1.0


def test_the_cache_is_rebuilt_when_the_data_the_weights_or_the_precision_change(tmp_path, synthetic):
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    freeze_backbone(model)
    clip = model[0]
    items = read_catalog(synthetic.train_path).items
    texts, images = [i.text for i in items[:6]], [i.image for i in items[:6]]
    first = TrunkCache.build(clip, texts, images, tmp_path)
    assert not first.reused and (first.text_count, first.image_count) == (6, 6)
    assert TrunkCache.build(clip, texts, images, tmp_path).reused

    stat = os.stat(images[0])
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the image file changed
    changed = TrunkCache.build(clip, texts, images, tmp_path)
    assert not changed.reused and not first.folder.exists()  # the stale cache is deleted
    assert not TrunkCache.build(clip, texts[:5], images, tmp_path).reused  # other data
    with torch.no_grad():
        next(clip.trunk_modules()[0].parameters()).add_(0.01)  # other trunk weights
    assert not TrunkCache.build(clip, texts[:5], images, tmp_path).reused
    half = TrunkCache.build(clip, texts[:5], images, tmp_path, dtype="float16")
    assert not half.reused and half.dtype == "float16"
    assert sorted(p.name for p in tmp_path.iterdir()) == [half.folder.name]


def _mapped_file(tensor: torch.Tensor) -> str:
    """The file whose mapping holds ``tensor``'s memory ("" for anonymous memory), from /proc."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(bound, 16) for bound in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) > 5 else ""
    return ""


def test_memory_mapped_cache_serves_what_the_trunks_compute(tmp_path, synthetic):
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    freeze_backbone(model)
    clip = model[0].eval()
    items = read_catalog(synthetic.train_path).items[:10]
    texts, images = [i.text for i in items], [i.image for i in items]
    cache = TrunkCache.build(clip, texts, images, tmp_path, memory_gb=0, batch_size=4)
    assert not cache.in_memory and _mapped_file(cache._shards["image"][0]["tokens"]).endswith("image-0-0.pt")
    in_memory = TrunkCache(cache.folder)
    assert in_memory.in_memory and not _mapped_file(in_memory._shards["image"][0]["tokens"]).endswith(".pt")

    features = clip.preprocess([{"text": t, "image": p} for t, p in zip(texts, images, strict=True)])
    with torch.no_grad():
        direct_text = clip.text_trunk(features["input_ids"])
        direct_image = clip.image_trunk(features["pixel_values"])
    for source in (cache, in_memory):
        text, image = source.text_trunk(texts), source.image_trunk(images)
        assert torch.allclose(text.pooled, direct_text.pooled, atol=1e-5)
        length = text.tokens.shape[1]
        assert torch.equal(text.mask, direct_text.mask[:, :length])
        assert torch.allclose(text.tokens[text.mask], direct_text.tokens[:, :length][text.mask], atol=1e-5)
        assert torch.allclose(image.tokens, direct_image.tokens, atol=1e-5)
    assert cache.text_trunk(["a text nobody cached"]) is None


def test_collated_cache_features_embed_mixed_items_like_preprocessing(mixed_catalog):
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    freeze_backbone(model)
    model.eval()
    pairs = build_pairs(read_catalog(mixed_catalog))
    dataset = pairs.to_dataset()
    texts, images = dataset_items(dataset)
    assert 0 < len(images) < len(texts) + len(images)
    collator = cache_frozen_trunks(model, dataset)
    plain = BaseDataCollator(preprocess_fn=model.preprocess)
    rows = [dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // 24))]
    rows.append(
        {**rows[0], "anchor": {"text": "an item the cache never saw", "image": None, "relation": "r"}}
    )
    for batch_rows in (rows[:-1], rows):
        cached_batch, plain_batch = collator(batch_rows), plain(batch_rows)
        for column in ("anchor", "positive"):
            a = {k[len(column) + 1 :]: v for k, v in cached_batch.items() if k.startswith(column + "_")}
            b = {k[len(column) + 1 :]: v for k, v in plain_batch.items() if k.startswith(column + "_")}
            with torch.no_grad():
                out_a, out_b = model(a), model(b)
            for key in ("sentence_embedding", "text_embedding", "image_embedding", "has_text", "has_image"):
                assert torch.allclose(out_a[key].float(), out_b[key].float(), atol=1e-5), (column, key)
    hits, misses = collator.cached_preprocess.hits, collator.cached_preprocess.misses
    assert hits == 3 and misses == 1  # the unseen anchor text sent its column to preprocess


def test_train_mode_reaches_every_module_outside_the_frozen_trunks_and_none_inside():
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    freeze_backbone(model)
    clip = model[0]
    inside = {id(m) for trunk in clip.trunk_modules() for m in trunk.modules()}
    model.train()
    assert inside and all(not m.training for m in clip.modules() if id(m) in inside)
    assert all(m.training for m in model.modules() if id(m) not in inside)
    clip.trunk_modules()[0].train()  # someone switches a trunk back: the next call puts it right
    model.train()
    assert all(not m.training for m in clip.modules() if id(m) in inside)
    model.eval()
    assert not any(m.training for m in model.modules())


def test_frozen_trunks_stay_in_eval_mode_and_relations_go_through_them_once(trunk_calls):
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    freeze_backbone(model)
    clip = model[0]
    model.train()
    assert not any(m.training for m in clip.trunk_modules()) and model[1].training
    assert not any(p.requires_grad for m in clip.trunk_modules() for p in m.parameters())
    assert all(p.requires_grad for _, p in clip.head_parameters())
    relations = ["matches in colour", "same brand"]
    loss = RCMLLoss(model, relations)
    items = [{"text": "red bib", "relation": relations[0]}, {"text": "blue cup", "relation": relations[1]}]
    labels = torch.tensor([[0, 1, 0], [1, 0, 1]])
    for _ in range(3):  # three training steps
        loss([model.preprocess(items), model.preprocess(items[::-1])], labels)
    # The item texts at every step (2 columns x 2 items); the loss's two relations once.
    assert trunk_calls["text"] == 3 * 4 + 2


def test_the_trainer_example_trains_a_frozen_model_from_the_cache(synthetic, tmp_path, capsys, step_losses):
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "train_with_trainer.py"
    data, output = str(synthetic.train_path), str(tmp_path / "ex")
    argv = ["--data", data, "--output", output, "--batch-size", "16", "--max-steps", "2", "--freeze-backbone"]
    out = runpy.run_path(str(example))["main"](argv)
    assert "trunk cache built: 60 texts, 60 images" in capsys.readouterr().out
    assert len(step_losses) == 2 and all(images == 0 for _, images in step_losses)
    assert rcml_st.load(out)[0].model.visual.proj.requires_grad  # the saved model is not frozen


def test_a_folder_given_as_the_cache_folder_keeps_its_other_contents(tmp_path, synthetic):
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    freeze_backbone(model)
    items = read_catalog(synthetic.train_path).items[:4]
    rows = {"anchor": [{"text": i.text, "image": i.image, "relation": "r"} for i in items]}
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "0123456789abcdef0123456789abcdef").mkdir()  # a user folder named like a cache
    first = cache_frozen_trunks(model, rows, tmp_path).cache
    rows["anchor"] = rows["anchor"][:3]  # other data: a new cache, the first one is stale
    second = cache_frozen_trunks(model, rows, tmp_path).cache
    assert not first.folder.exists() and second.folder.is_dir()
    assert (tmp_path / "checkpoint-1" / "model.safetensors").read_bytes() == b"weights"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "0123456789abcdef0123456789abcdef").is_dir()


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "delete"])
def test_a_damaged_cache_is_detected_and_rebuilt(tmp_path, synthetic, damage):
    model = rcml_st.build_model("rcml-tiny", device="cpu")
    freeze_backbone(model)
    clip = model[0]
    items = read_catalog(synthetic.train_path).items[:6]
    texts, images = [i.text for i in items], [i.image for i in items]
    first = TrunkCache.build(clip, texts, images, tmp_path)
    expected = first.image_trunk(images), first.text_trunk(texts)
    victim = first.folder / "image-0-0.pt"
    size = victim.stat().st_size
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: size // 3])
    elif damage == "overwrite":
        victim.write_bytes(b"\0" * (size + 8))
    else:
        victim.unlink()
    lines: list[str] = []
    again = TrunkCache.build(clip, texts, images, tmp_path, log=lines.append)
    assert not again.reused and again.folder == first.folder
    assert "image-0-0.pt" in lines[0] and "rebuilding" in lines[0]
    assert victim.stat().st_size == size
    for old, new in zip(expected, (again.image_trunk(images), again.text_trunk(texts)), strict=True):
        assert torch.equal(old.pooled, new.pooled) and torch.equal(old.tokens, new.tokens)
    assert TrunkCache.build(clip, texts, images, tmp_path).reused
