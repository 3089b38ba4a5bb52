"""Any sentence-transformers model as an evaluated method, the relation written into its texts.

What a sentence-transformers user would do instead of RCML: take the model they already use and
give it the relation as a prompt (INSTRUCTOR-style), ``"{relation}: {text}"``, on both sides of a
query. Such a model has no relation conditioning, so the relation can only reach it through the
text; images (for a model that reads them, e.g. a CLIP one) get no prompt.

- Texts: with a template that contains ``{relation}``, each item text is encoded once per relation
  (R passes per item: what indexing R relations costs such a model); without ``{relation}`` (or
  with no template: the texts as they are) once, and every relation sees the same vector.
- Images: encoded once, when the model reads images (``model.supports("image")``).
- The fused item vector is ``normalize(text + image)``, as for RCML's ``clip`` baseline.
- Directions the model cannot serve (``ii``, ``ti``, ``it`` for a text-only model) are reported as
  ``None`` (not applicable, never 0), and so are relation type and validity when the catalogue
  has a modality the model cannot read: its item vectors would not describe the same items.

Example:
    >>> check_prompt_template("{relation}: {text}")
    '{relation}: {text}'
    >>> check_prompt_template("{relation}")
    Traceback (most recent call last):
    ...
    rcml_st.errors.UsageError: --prompt-template '{relation}': must contain {text} (where the item text goes)
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rcml_st.data.images import load_image
from rcml_st.encoding import RelationEmbeddings
from rcml_st.errors import UsageError
from rcml_st.evaluation.retrieval import DIRECTIONS

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rcml_st.data.catalog import Catalog

#: The fields a prompt template may use.
TEMPLATE_FIELDS = ("relation", "text")


def check_prompt_template(template: str) -> str:
    """Returns ``template`` if it is a usable prompt template, else raises a one-line UsageError.

    A template must contain ``{text}`` and may contain ``{relation}``; no other fields, format
    specs or conversions. Literal braces are written ``{{`` and ``}}``.

    Raises:
        UsageError: naming the template and the problem.

    Example:
        >>> check_prompt_template("Represent the item for '{relation}': {text}")
        "Represent the item for '{relation}': {text}"
    """
    where = f"--prompt-template {template!r}"
    try:
        fields = [
            (name, spec, conv)
            for _, name, spec, conv in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise UsageError(f"{where}: {exc} (write literal braces as {{{{ and }}}})") from None
    for name, spec, conversion in fields:
        if name not in TEMPLATE_FIELDS:
            shown = "{}" if name == "" else "{" + name + "}"
            raise UsageError(f"{where}: unknown field {shown}; use {{text}} and optionally {{relation}}")
        if spec or conversion:
            raise UsageError(f"{where}: fields take no format spec or conversion, write {{{name}}}")
    if "text" not in {name for name, _, _ in fields}:
        raise UsageError(f"{where}: must contain {{text}} (where the item text goes)")
    return template


def uses_relation(template: str | None) -> bool:
    """Whether a (checked) template puts the relation into the text."""
    return template is not None and any(
        name == "relation" for _, name, _, _ in string.Formatter().parse(template)
    )


def apply_template(template: str | None, text: str, relation: str | None) -> str:
    """The text the model reads: ``template`` filled in, or ``text`` itself without a template.

    Example:
        >>> apply_template("{relation}: {text}", "navy shirt", "same colour")
        'same colour: navy shirt'
        >>> apply_template(None, "navy shirt", "same colour")
        'navy shirt'
    """
    if template is None:
        return text
    return template.format(text=text, relation=relation if relation is not None else "")


@dataclass(frozen=True)
class PromptedModel:
    """A sentence-transformers model (not RCML) to evaluate, with the prompt template for its texts.

    Attributes:
        model: any ``SentenceTransformer`` (text-only or, like CLIP, text and image).
        template: e.g. ``"{relation}: {text}"`` (checked with :func:`check_prompt_template`), or
            ``None`` for the texts as they are (the model then ignores the relation).

    Example:
        >>> from sentence_transformers import SentenceTransformer
        >>> minilm = SentenceTransformer("all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> prompted = PromptedModel(minilm, "{relation}: {text}")  # doctest: +SKIP
        >>> evaluate_catalog(rcml_model, catalog, compare={"all-MiniLM-L6-v2": prompted})  # doctest: +SKIP
    """

    model: SentenceTransformer
    template: str | None = None

    def __post_init__(self) -> None:
        if self.template is not None:
            check_prompt_template(self.template)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Which of ``"text"`` and ``"image"`` the model reads."""
        return tuple(m for m in ("text", "image") if self.model.supports(m))


def served_directions(modalities: Sequence[str]) -> frozenset[str]:
    """The retrieval directions a model reading ``modalities`` can serve.

    Example:
        >>> sorted(served_directions(["text"]))
        ['tt']
    """
    return frozenset(d for d, (q, c) in DIRECTIONS.items() if q in modalities and c in modalities)


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _encode(model: SentenceTransformer, inputs: list, batch_size: int, show_progress_bar: bool) -> np.ndarray:
    return np.asarray(
        model.encode(
            inputs,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress_bar,
        ),
        dtype=np.float32,
    )


def encode_prompted(
    prompted: PromptedModel,
    catalog: Catalog,
    relations: Sequence[str],
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> RelationEmbeddings:
    """A prompted model's embeddings of a catalogue's items under each relation.

    Args:
        prompted: the model and its template.
        catalog: the evaluation catalogue.
        relations: the relations to embed under.
        batch_size: inputs per encoding batch.
        show_progress_bar: show sentence-transformers' progress bars.

    Returns:
        (R, N, D) unit vectors; ``has_text`` / ``has_image`` are False for a modality the model
        does not read (its vectors are zeros there).
    """
    return encode_prompted_inputs(
        prompted,
        [item.text for item in catalog.items],
        [item.image for item in catalog.items],
        relations,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
    )


def encode_prompted_inputs(
    prompted: PromptedModel,
    texts: Sequence[str | None],
    images: Sequence[Any],
    relations: Sequence[str],
    *,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> RelationEmbeddings:
    """:func:`encode_prompted` for items given as parallel lists of texts and images.

    Args:
        prompted: the model and its template.
        texts: each item's text, or ``None``.
        images: each item's image (a path or a PIL image), or ``None``; as long as ``texts``.
        relations: the relations to embed under.
        batch_size: inputs per encoding batch.
        show_progress_bar: show sentence-transformers' progress bars.

    Returns:
        (R, N, D) unit vectors, as :func:`encode_prompted`.
    """
    if len(texts) != len(images):
        raise ValueError(f"{len(texts)} texts but {len(images)} images: give one of each (or None) per item")
    relations = list(relations)
    model, template = prompted.model, prompted.template
    modalities = prompted.modalities
    n, r = len(texts), len(relations)
    has_text = np.array([t is not None for t in texts], dtype=bool) & ("text" in modalities)
    has_image = np.array([i is not None for i in images], dtype=bool) & ("image" in modalities)
    text_items, image_items = np.flatnonzero(has_text), np.flatnonzero(has_image)
    parts: dict[str, np.ndarray] = {}
    if text_items.size:
        item_texts = [texts[i] for i in text_items]
        per_relation = relations if uses_relation(template) else [None]
        encoded = _encode(
            model,
            [apply_template(template, text, rel) for rel in per_relation for text in item_texts],
            batch_size,
            show_progress_bar,
        ).reshape(len(per_relation), text_items.size, -1)
        parts["text"] = encoded
    if image_items.size:
        chunks: list[np.ndarray] = []
        for start in range(0, image_items.size, batch_size):
            # As RCML sees them: RGB, EXIF rotation applied, transparency on white.
            chunk = [load_image(images[i]) for i in image_items[start : start + batch_size]]
            chunks.append(_encode(model, chunk, batch_size, False))
        parts["image"] = np.concatenate(chunks)[None]
    dim = next(iter(parts.values())).shape[-1] if parts else 1
    out = {m: np.zeros((r, n, dim), dtype=np.float32) for m in ("text", "image")}
    if "text" in parts:
        out["text"][:, text_items] = parts["text"]  # (R or 1, T, D) broadcasts over relations
    if "image" in parts:
        out["image"][:, image_items] = parts["image"]
    item = _normalize(out["text"] + out["image"])
    return RelationEmbeddings(relations, item, out["text"], out["image"], has_text, has_image)
