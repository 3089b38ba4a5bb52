"""Any sentence-transformers model as a compared method, the relation written into its texts.

Uses the real all-MiniLM-L6-v2, which the ``lite`` extra installs as a zipped folder (offline).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcml_st.errors import UsageError
from rcml_st.evaluation import evaluate_catalog
from rcml_st.evaluation.prompted import (
    PromptedModel,
    apply_template,
    check_prompt_template,
    encode_prompted,
    served_directions,
)

NULL = dict.fromkeys(("hit@1", "hit@5", "hit@10", "mrr"))


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{relation}", "must contain {text}"),
        ("{relation}: {item}", "unknown field {item}"),
        ("{} {text}", "unknown field {}"),
        ("{text!r}", "no format spec or conversion"),
        ("{text:>20}", "no format spec or conversion"),
        ("{text", "literal braces"),
    ],
)
def test_bad_templates_are_one_line_usage_errors(template, problem):
    with pytest.raises(UsageError) as caught:
        check_prompt_template(template)
    message = str(caught.value)
    assert message.startswith(f"--prompt-template {template!r}: ") and problem in message
    assert "\n" not in message
    with pytest.raises(UsageError):
        PromptedModel(object(), template)  # type: ignore[arg-type]


def test_good_templates_and_literal_braces():
    for template in ("{text}", "{relation}: {text}", "query {{json}} {text} ({relation})"):
        assert check_prompt_template(template) == template
    assert (
        apply_template("{{ {relation} }} {text}", "navy shirt", "same colour") == "{ same colour } navy shirt"
    )
    assert served_directions(["text", "image"]) == {"tt", "ii", "ti", "it"}
    assert served_directions(["image"]) == {"ii"}


def test_texts_are_encoded_once_per_relation_with_the_template(minilm, test_catalog):
    relations = test_catalog.relations[:2]
    prompted = PromptedModel(minilm, "{relation}: {text}")
    assert prompted.modalities == ("text",)
    embeddings = encode_prompted(prompted, test_catalog, relations)
    assert embeddings.has_text.all() and not embeddings.has_image.any()
    assert not embeddings.image.any()
    for r, relation in enumerate(relations):
        for i in (0, len(test_catalog) - 1):
            text = test_catalog.items[i].text
            want = minilm.encode(f"{relation}: {text}", normalize_embeddings=True)
            np.testing.assert_allclose(embeddings.text[r, i], want, atol=1e-5)
    assert not np.allclose(embeddings.text[0], embeddings.text[1])  # the relation changes the text
    # Without {relation} (or without a template) every relation sees the same vector.
    agnostic = encode_prompted(PromptedModel(minilm, "item: {text}"), test_catalog, relations)
    np.testing.assert_array_equal(agnostic.text[0], agnostic.text[1])


def test_text_only_model_is_null_where_it_cannot_serve(model, minilm, test_catalog, tmp_path):
    report = evaluate_catalog(
        model,
        test_catalog,
        compare={"all-MiniLM-L6-v2": PromptedModel(minilm, "{relation}: {text}"), "plain": minilm},
        baselines=(),
        negatives=5,
        seed=0,
    )
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert list(data["retrieval"]) == ["rcml", "all-MiniLM-L6-v2", "plain"]
    assert data["settings"]["prompt_templates"] == {"all-MiniLM-L6-v2": "{relation}: {text}", "plain": None}
    for task in ("retrieval", "retrieval_hard"):
        for name in ("all-MiniLM-L6-v2", "plain"):
            scores = data[task][name]
            assert all(0.0 <= v <= 1.0 for v in scores["tt"].values())
            # Images it cannot read: not applicable, never 0; nor an average over tt alone.
            for direction in ("ii", "ti", "it", "avg"):
                assert scores[direction] == NULL
        assert all(v is not None for v in data[task]["rcml"]["ii"].values())
    # The items have images it cannot see: relation type and validity do not apply either.
    assert data["relation_type"]["all-MiniLM-L6-v2"] == {"top1": None, "top3": None}
    assert data["validity"]["all-MiniLM-L6-v2"] == {"accuracy": None}
    assert report.methods["rcml"].relation_type["top1"] is not None
    # The plot draws both bar charts (random and hard negatives) with the nulls as n/a.
    from PIL import Image

    from rcml_st.evaluation.plot import plot_report

    plot_report(report, test_catalog, tmp_path / "eval.png")
    with Image.open(tmp_path / "eval.png") as image:
        assert image.format == "PNG" and image.height > 1000


def test_on_text_only_data_every_task_applies(model, minilm, test_catalog):
    from dataclasses import replace

    from rcml_st.data import Catalog

    text_only = Catalog(path=None, items=[replace(item, image=None) for item in test_catalog.items])
    report = evaluate_catalog(
        model,
        text_only,
        compare={"minilm": PromptedModel(minilm, "{relation}: {text}")},
        baselines=(),
        negatives=5,
        hard_negatives=False,
        probe_max_edges=60,
    )
    result = report.methods["minilm"]
    assert result.retrieval.metrics["avg"] == result.retrieval.metrics["tt"]
    assert result.retrieval.metrics["tt"]["hit@5"] is not None
    assert result.relation_type["top1"] is not None and result.validity["accuracy"] is not None


def test_an_open_clip_two_tower_model_takes_the_prompt_on_its_text_side(model, test_catalog):
    """An RCML model's backbone as a prompted model: CLIP-style, both towers, prompt on texts only."""
    prompted = PromptedModel(model, "{relation}: {text}")
    assert prompted.modalities == ("text", "image")
    relations = test_catalog.relations
    embeddings = encode_prompted(prompted, test_catalog, relations)
    item = test_catalog.items[0]
    for r, relation in enumerate(relations):
        want = model.encode(
            f"{relation}: {item.text}", normalize_embeddings=True
        )  # no relation= : plain tower
        np.testing.assert_allclose(embeddings.text[r, 0], want, atol=1e-5)
    np.testing.assert_array_equal(embeddings.image[0], embeddings.image[-1])  # images: no prompt
    report = evaluate_catalog(model, test_catalog, compare={"prompted": prompted}, baselines=(), negatives=4)
    for direction in ("tt", "ii", "ti", "it", "avg"):
        assert report.methods["prompted"].retrieval.metrics[direction]["hit@1"] is not None
