"""Per-relation embeddings of a catalogue for each evaluated method: RCML and the baselines.

Every method is reduced to the same thing, a :class:`~rcml_st.encoding.RelationEmbeddings` whose
``item``, ``text`` and ``image`` arrays (R, N, D) hold vectors whose *dot product* is the method's
similarity of two items under a relation. The three tasks then score all methods alike.

- ``rcml``: the model's relation-conditioned embeddings (unit vectors, cosine).
- ``clip``: the model's *own* backbone without its relation pooling (for a fine-tuned model, the
  fine-tuned backbone: not a zero-shot one), with the relation description appended to
  the item's text (``"<text> <relation>"``), as the RCML paper's baselines get the relation; the
  image side stays the plain image embedding. When the result would not fit the text tower's
  context (77 tokens for CLIP), whole words are dropped from the end of the *item text* so that
  the relation is never the part the tokenizer cuts off (once per item, against the relation
  with the most tokens: an item's text is the same under every relation).
- ``zero_shot``: the *untrained* backbone the model was trained from, rebuilt from the spec its
  config records (``rcml-lite``, or an open_clip model name with a pretrained tag whose weights
  are available offline), evaluated exactly like ``clip`` (relation text appended to the item
  text), so that ``clip`` beside it shows what training did to the backbone. Left out, with the
  reason, when the backbone cannot be rebuilt (a custom config or weights file that is not
  shipped with the model) or was random (``rcml-tiny``, ``--pretrained none``: an untrained
  random network is not a zero-shot model).
- ``product``: the training-free score ``sim(A, B | r) = (zA . zr) (zB . zr)`` on plain backbone
  embeddings, ``zr`` the relation description's (normalised) text embedding. It factorises, so
  each item gets a 1-d "vector" ``[zX . zr]`` per relation and the dot product of two of them is
  the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rcml_st.encoding import RelationEmbeddings, encode_relations
from rcml_st.errors import UsageError
from rcml_st.evaluation.retrieval import catalog_inputs
from rcml_st.modules import rcml_modules

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rcml_st.data.catalog import Catalog
    from rcml_st.modules import OpenCLIPInput

#: Method keys of the report that are not ``--compare`` models.
RCML, CLIP, ZERO_SHOT, PRODUCT = "rcml", "clip", "zero_shot", "product"
BASELINES: tuple[str, ...] = (CLIP, ZERO_SHOT, PRODUCT)
#: What each baseline is, for tables, help texts and reports.
DESCRIPTIONS: dict[str, str] = {
    CLIP: "this model's own backbone (fine-tuned with it, if it was) without its relation pooling, "
    "relation text appended to the item text",
    ZERO_SHOT: "the untrained backbone this model was trained from, relation text appended like clip",
    PRODUCT: "training-free (zA.zr)(zB.zr) on this model's backbone",
}


def is_rcml(model: SentenceTransformer) -> bool:
    """Whether a model is an RCML one (input module followed by relation pooling)."""
    try:
        rcml_modules(model)
    except UsageError:
        return False
    return True


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def encode_with_plain(
    model: SentenceTransformer,
    catalog: Catalog,
    relations: Sequence[str],
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    label: str = "rcml",
) -> tuple[RelationEmbeddings, RelationEmbeddings]:
    """The model's embeddings under each relation, and its plain backbone embeddings, in one pass.

    Returns:
        ``(conditioned, plain)``: (R, N, D) arrays under ``relations``, and (1, N, D) arrays under
        ``[None]`` (the relation-agnostic backbone embedding).
    """
    both = encode_relations(
        model,
        catalog_inputs(catalog),
        [None, *relations],
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        progress_description=f"Encoding items ({label})",
    )

    def part(sl: slice, names: list[str | None]) -> RelationEmbeddings:
        return RelationEmbeddings(
            relations=names,
            item=both.item[sl],
            text=both.text[sl],
            image=both.image[sl],
            has_text=both.has_text,
            has_image=both.has_image,
        )

    return part(slice(1, None), list(relations)), part(slice(0, 1), [None])


def append_relation(clip: OpenCLIPInput, text: str, relation: str) -> str:
    """``"<text> <relation>"``, the item text shortened by whole words if needed to fit the context.

    Example:
        >>> append_relation(clip, "Organic cotton nursing pillow", "matches in colour")  # doctest: +SKIP
        'Organic cotton nursing pillow matches in colour'
    """
    full = f"{text} {relation}"
    limit = clip.max_seq_length
    # Every token covers at least one byte: short texts (plus start/end tokens) cannot overflow.
    if len(full.encode("utf-8")) + 2 < limit:
        return full

    def fits(candidate: str) -> bool:
        return int((clip.tokenizer([candidate])[0] != 0).sum()) < limit

    if fits(full):
        return full
    words = text.split()
    low, high = 0, len(words)  # the largest prefix of words that still fits with the relation
    while low < high:
        middle = (low + high + 1) // 2
        if fits(" ".join([*words[:middle], relation])):
            low = middle
        else:
            high = middle - 1
    return " ".join([*words[:low], relation])


def clip_baseline(
    model: SentenceTransformer,
    catalog: Catalog,
    relations: Sequence[str],
    plain: RelationEmbeddings,
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> RelationEmbeddings:
    """The ``clip`` baseline: relation text appended to item text, no conditioning.

    Args:
        model: the RCML model whose backbone is used.
        catalog: the evaluation catalogue.
        relations: the relations to embed under.
        plain: the model's plain embeddings (from :func:`encode_with_plain`); its image vectors are
            reused as they are.
        batch_size: texts per encoding batch.
        show_progress_bar: show a progress bar.

    Returns:
        (R, N, D) unit vectors; ``item`` fuses text and image as the model does
        (``normalize(text + image)``).
    """
    relations = list(relations)
    n = len(catalog)
    has_text, has_image = plain.has_text, plain.has_image
    text_items = np.flatnonzero(has_text)
    # The text tower runs once per (item, relation) here: the relation is part of the input text.
    clip, _ = rcml_modules(model)
    # Each item text is shortened once, against the relation with the most tokens, so an item
    # reads the same under every relation and only the appended description differs.
    token_counts = (clip.tokenizer(relations) != 0).sum(dim=1).tolist() if relations else []
    longest = relations[int(np.argmax(token_counts))] if relations else ""
    prefixes = [append_relation(clip, catalog.items[i].text, longest)[: -len(longest)] for i in text_items]
    texts = [f"{prefix}{relation}" for relation in relations for prefix in prefixes]
    dim = plain.text.shape[-1]
    text = np.zeros((len(relations), n, dim), dtype=np.float32)
    if texts:
        encoded = encode_relations(
            model,
            texts,
            [None],
            batch_size=batch_size,
            modalities=("text",),
            show_progress_bar=show_progress_bar,
            progress_description="Encoding item text + relation (clip)",
        ).text[0]
        text[:, text_items] = encoded.reshape(len(relations), text_items.size, dim)
    image = np.broadcast_to(plain.image, (len(relations), n, dim)).copy()
    item = _normalize(text + image)
    return RelationEmbeddings(relations, item, text, image, has_text.copy(), has_image.copy())


def product_baseline(
    model: SentenceTransformer, relations: Sequence[str], plain: RelationEmbeddings
) -> RelationEmbeddings:
    """The ``product`` baseline: ``sim(A, B | r) = (zA . zr) (zB . zr)`` on plain embeddings.

    Args:
        model: the RCML model whose text tower embeds the relation descriptions.
        relations: the relation descriptions.
        plain: the model's plain embeddings (from :func:`encode_with_plain`).

    Returns:
        (R, N, 1) arrays ``[zX . zr]`` (per modality and for the fused item vector): the dot
        product of two items' entries is the baseline's score.
    """
    import torch

    clip, _ = rcml_modules(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            zr = clip.encode_relation_texts(list(relations)).float().cpu().numpy()
    finally:
        model.train(was_training)
    zr = _normalize(zr)  # (R, D)

    def project(vectors: np.ndarray) -> np.ndarray:  # (1, N, D) -> (R, N, 1)
        return np.einsum("nd,rd->rn", vectors[0], zr)[..., None].astype(np.float32)

    return RelationEmbeddings(
        list(relations),
        project(plain.item),
        project(plain.text),
        project(plain.image),
        plain.has_text.copy(),
        plain.has_image.copy(),
    )


def zero_shot_spec(model: SentenceTransformer) -> tuple[str, str | None]:
    """The ``(backbone, pretrained)`` the model was trained from, if it can be rebuilt untrained.

    Raises:
        UsageError: saying why not (a custom config or weights file, or random initialisation).

    Example:
        >>> zero_shot_spec(rcml_st.build_model("rcml-lite"))  # doctest: +SKIP
        ('rcml-lite', None)
    """
    import open_clip

    from rcml_st.modules.architectures import ARCHITECTURES
    from rcml_st.modules.lite import is_lite

    clip, _ = rcml_modules(model)
    backbone, pretrained = clip.backbone, clip.pretrained
    if pretrained is not None and pretrained.strip().lower() in ("", "none", "random"):
        pretrained = None
    if is_lite(backbone):
        return backbone, None
    if backbone in ARCHITECTURES or (pretrained is None and open_clip.get_model_config(backbone) is not None):
        raise UsageError(f"its backbone {backbone} started from random weights: there is no zero-shot model")
    if open_clip.get_model_config(backbone.replace("/", "-")) is None:
        raise UsageError(
            f"its backbone {backbone!r} is a custom architecture that cannot be rebuilt from its name"
        )
    if pretrained is None or pretrained not in open_clip.list_pretrained_tags_by_model(
        backbone.replace("/", "-")
    ):
        raise UsageError(
            f"its backbone {backbone} started from weights {pretrained!r}, not an open_clip pretrained tag"
        )
    return backbone, pretrained


def build_zero_shot(
    model: SentenceTransformer, seed: int = 0, device: str | None = None
) -> SentenceTransformer:
    """The untrained backbone the model was trained from, as an RCML model (see :func:`zero_shot_spec`).

    Parts the backbone adds fresh (``rcml-lite``'s image projection) are drawn with ``seed``,
    without touching the global random state.

    Raises:
        UsageError: when it cannot be rebuilt (the reason).
        RCMLError: when a pretrained tag's weights are neither cached nor downloadable.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    from rcml_st.modules import OpenCLIPInput

    backbone, pretrained = zero_shot_spec(model)
    _, pooling = rcml_modules(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = OpenCLIPInput(backbone, pretrained)
        # Same pooling settings, fresh weights: only the plain (relation-agnostic) output is used.
        fresh = type(pooling)(**pooling.get_config_dict())
    return SentenceTransformer(
        modules=[clip, fresh],
        device=str(model.device) if device is None else device,
        similarity_fn_name="cosine",
    )
