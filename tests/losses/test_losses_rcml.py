"""RCMLLoss: named terms, conditioned scoring, masked true positives, modalities, CLIP at beta = 1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

import rcml_st
from rcml_st.losses import RCMLLoss, RelationGraph
from rcml_st.modules import rcml_modules

RELATIONS = ["matches in colour", "made by the same brand", "the same product"]


def _items(images, n):
    return [{"text": f"item {k} text", "image": images[k]} for k in range(n)]


def test_returns_the_four_named_terms_and_trains_every_parameter(model, make_batch):
    features, labels = make_batch(model, [(0, 1, 0), (2, 3, 1), (4, 4, 2), (5, 6, 0)], RELATIONS)
    loss = RCMLLoss(model, RELATIONS)
    terms = loss(features, labels)
    assert sorted(terms) == ["loss_ii", "loss_it", "loss_ti", "loss_tt"]
    assert all(torch.isfinite(value) and value > 0 for value in terms.values())
    torch.stack(list(terms.values())).sum().backward()
    clip, _ = rcml_modules(model)
    no_grad = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []  # DDP without find_unused_parameters needs this
    assert not clip.model.logit_scale.requires_grad  # unused by this loss, so frozen


def test_matches_a_reference_that_scores_candidates_under_the_query_relation(model, make_batch, images):
    """Each query meets every candidate with both encoded under the query's relation."""
    model.eval()
    pairs = [(0, 3, 0), (1, 4, 1), (2, 5, 0)]  # distinct items: nothing is masked
    features, labels = make_batch(model, pairs, RELATIONS)
    temperature = 0.05
    with torch.no_grad():
        terms = RCMLLoss(model, RELATIONS, temperature=temperature)(features, labels)
    embedded = rcml_st.encode_relations(model, _items(images, 6), RELATIONS[:2])
    vectors = {"text": torch.from_numpy(embedded.text), "image": torch.from_numpy(embedded.image)}
    sources, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    for name, (query_modality, candidate_modality) in {
        "tt": ("text", "text"),
        "ti": ("text", "image"),
    }.items():
        losses = []
        for queries, candidates in ((sources, targets), (targets, sources)):
            for i, (query, relation) in enumerate(zip(queries, (p[2] for p in pairs), strict=True)):
                q = vectors[query_modality][relation, query]
                c = vectors[candidate_modality][relation, candidates]
                logits = (c @ q / temperature)[None]
                losses.append(F.cross_entropy(logits, torch.tensor([i])))
        assert terms[f"loss_{name}"].item() == pytest.approx(torch.stack(losses).mean().item(), abs=1e-4)


def test_at_beta_one_with_own_text_image_pairs_it_is_clip_loss(tiny_clip_config, make_batch, images):
    """beta = 1 with only intra-sample pairs is plain CLIP: ti + it equals 2 x open_clip's ClipLoss."""
    torch.manual_seed(0)
    model = rcml_st.build_model(tiny_clip_config, beta=1.0, device="cpu").eval()
    pairs = [(k, k, 2) for k in range(6)]
    features, labels = make_batch(model, pairs, RELATIONS)
    temperature = 0.07
    with torch.no_grad():
        terms = RCMLLoss(model, RELATIONS, temperature=temperature)(features, labels)
    plain = rcml_st.encode_relations(model, _items(images, 6), [None])
    texts, pixels = torch.from_numpy(plain.text[0]), torch.from_numpy(plain.image[0])
    reference = ClipLoss()(pixels, texts, logit_scale=1.0 / temperature)
    assert (terms["loss_ti"] + terms["loss_it"]).item() == pytest.approx(2 * reference.item(), abs=1e-4)
    # An item's text and its image are different modalities: nothing to compare within one.
    assert terms["loss_tt"].item() == 0.0 and terms["loss_ii"].item() == 0.0


def test_a_batch_of_only_intra_sample_pairs_trains(model, make_batch):
    # The positives' column then has no text at all (only the relation texts go through the tower).
    features, labels = make_batch(model, [(k, k, 2) for k in range(4)], RELATIONS)
    terms = RCMLLoss(model, RELATIONS)(features, labels)
    assert terms["loss_ti"].item() > 0 and terms["loss_it"].item() > 0
    torch.stack(list(terms.values())).sum().backward()
    assert model[1].attention.in_proj_weight.grad is not None
    assert "condition" not in vars(model[1])  # the temporary guard is gone


def test_true_positives_of_the_relation_graph_are_never_negatives(model, make_batch):
    # Pairs 0->1 and 2->3 under relation 0, and the graph also links 0-3 and 2-1 under it: each
    # query's only other candidate is a true match, so every logit but its own is masked.
    pairs = [(0, 1, 0), (2, 3, 0)]
    features, labels = make_batch(model, pairs, RELATIONS)
    graph = RelationGraph([(0, 0, 1), (0, 2, 3), (0, 0, 3), (0, 2, 1)], n_items=4, n_relations=3)
    masked = RCMLLoss(model, RELATIONS, positives=graph)(features, labels)
    assert all(value.item() == pytest.approx(0.0, abs=1e-6) for value in masked.values())
    unmasked = RCMLLoss(model, RELATIONS)(features, labels)
    assert all(value.item() > 0.01 for value in unmasked.values())
    # The same links under another relation do not make them positives under relation 1.
    other = RelationGraph([(0, 0, 3), (0, 2, 1)], n_items=4, n_relations=3)
    features, labels = make_batch(model, [(0, 1, 1), (2, 3, 1)], RELATIONS)
    assert all(
        v.item() > 0.01 for v in RCMLLoss(model, RELATIONS, positives=other)(features, labels).values()
    )


def test_the_same_item_twice_in_a_batch_is_not_its_own_negative(model, make_batch):
    features, labels = make_batch(model, [(0, 1, 0), (0, 1, 0)], RELATIONS)
    terms = RCMLLoss(model, RELATIONS)(features, labels)
    assert all(value.item() == pytest.approx(0.0, abs=1e-6) for value in terms.values())


def test_items_without_a_modality_drop_out_of_its_directions(model, make_batch):
    # Items 0 and 1 have no image: pair 0->1 only takes part in text->text.
    features, labels = make_batch(model, [(0, 1, 0), (2, 3, 0), (4, 5, 0)], RELATIONS, text_only=(0, 1))
    terms = RCMLLoss(model, RELATIONS)(features, labels)
    assert all(torch.isfinite(v) for v in terms.values())
    only_text, _ = make_batch(model, [(0, 1, 0), (2, 3, 0)], RELATIONS, text_only=(0, 1, 2, 3))
    terms = RCMLLoss(model, RELATIONS)(only_text, torch.tensor([[0, 1, 0], [2, 3, 0]]))
    assert terms["loss_tt"].item() > 0
    for name in ("loss_ii", "loss_ti", "loss_it"):
        assert terms[name].item() == 0.0 and terms[name].requires_grad  # zero, still on the graph


def test_zero_weights_drop_terms_and_weights_scale_them(model, make_batch):
    features, labels = make_batch(model, [(0, 1, 0), (2, 3, 1)], RELATIONS)
    full = RCMLLoss(model, RELATIONS)(features, labels)
    no_intra = RCMLLoss(model, RELATIONS, weights={"tt": 0, "ii": 0, "ti": 2.0})(features, labels)
    assert sorted(no_intra) == ["loss_it", "loss_ti"]
    assert no_intra["loss_ti"].item() == pytest.approx(2 * full["loss_ti"].item(), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"relations": []}, "at least one relation"),
        ({"temperature": 0.0}, "temperature"),
        ({"weights": {"xx": 1.0}}, "unknown loss terms"),
        ({"weights": {"tt": 0, "ii": 0, "ti": 0, "it": 0}}, "at least one > 0"),
    ],
)
def test_bad_settings_are_rejected(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RCMLLoss(model, **{"relations": RELATIONS, **kwargs})


def test_bad_labels_are_rejected(model, make_batch):
    features, labels = make_batch(model, [(0, 1, 0), (2, 3, 1)], RELATIONS)
    loss = RCMLLoss(model, RELATIONS)
    with pytest.raises(ValueError, match="label"):
        loss(features, labels[:, :2])
    with pytest.raises(ValueError, match="relation index"):
        loss(features, torch.tensor([[0, 1, 0], [2, 3, 7]]))
    with pytest.raises(ValueError, match="two item columns"):
        loss(features[:1], labels)


def test_config_for_the_model_card(model):
    config = RCMLLoss(model, RELATIONS, temperature=0.1).get_config_dict()
    assert config["temperature"] == 0.1 and config["relations"] == RELATIONS
    assert config["weights"] == {"tt": 1.0, "ii": 1.0, "ti": 1.0, "it": 1.0}
