"""The RCML model card: the ``README.md`` written into a model folder on every save.

It goes through sentence-transformers' public model-card API: :class:`RCMLModelCardData` is a
``SentenceTransformerModelCardData`` with its own template (``model_card_template.md``, next to
this module) and its own usage snippet. :func:`rcml_st.build_model` and :func:`rcml_st.load`
attach it, so ``model.save_pretrained(DIR)``, ``model.push_to_hub(ID)`` and ``rcml-st train``
all write it. The card says what the model does, its relation vocabulary, how to load it (and
why ``trust_remote_code=True``), how to encode under a relation and index into Qdrant, the
backbone and its pretrained source, the training data statistics, the ``--eval`` results against
the baselines, the package requirements and the citation. No local path ever appears in it: a
data file, a weights file or a model-config JSON is named by its file name only.

Example:
    >>> import tempfile
    >>> import rcml_st
    >>> model = rcml_st.build_model("rcml-tiny", relations=["matches in colour"], device="cpu")
    >>> folder = tempfile.mkdtemp()
    >>> model.save_pretrained(folder)
    >>> card = open(f"{folder}/README.md", encoding="utf-8").read()
    >>> "trust_remote_code=True" in card and "`matches in colour`" in card and folder not in card
    True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentence_transformers import SentenceTransformerModelCardData

from rcml_st.atomic import published_name
from rcml_st.modules.openclip import REQUIREMENTS

if TYPE_CHECKING:
    from collections.abc import Callable

    from sentence_transformers import SentenceTransformer

    from rcml_st.data.catalog import Catalog
    from rcml_st.evaluation.report import EvaluationReport
    from rcml_st.training.pairs import PairSet

TEMPLATE = Path(__file__).parent / "model_card_template.md"
PAPER = "https://arxiv.org/abs/2508.17497"
#: The directions of relation-guided retrieval, as the card names them.
DIRECTION_NAMES = {
    "tt": "text→text",
    "ii": "image→image",
    "ti": "text→image",
    "it": "image→text",
    "avg": "average",
}
METHOD_NAMES = {
    "rcml": "**RCML** (this model)",
    "clip": "`clip`: the backbone, relation text appended to the item text",
    "product": "`product`: training-free (zA·zr)(zB·zr)",
}
_SNIPPET_PLACEHOLDER = "sentence_transformers_model_id"  # what sentence-transformers swaps for the id


def public_name(value: str | os.PathLike[str] | None) -> str | None:
    """A name fit for a public card: a path becomes its file name, anything else stays as it is.

    Example:
        >>> public_name("/home/me/weights/vit-b-32.safetensors"), public_name("ViT-B-32")
        ('vit-b-32.safetensors', 'ViT-B-32')
    """
    if value is None:
        return None
    text = str(value)
    return Path(text).name if _is_path(text) else text


def _is_path(text: str) -> bool:
    return "/" in text or os.sep in text or Path(text).suffix != "" or Path(text).exists()


def describe_pretrained(pretrained: str | None) -> str:
    """How the backbone's weights were initialised, in words (a local file by its name only).

    Example:
        >>> describe_pretrained(None), describe_pretrained("openai")
        ('none (random initialisation)', 'open_clip pretrained tag `openai`')
        >>> describe_pretrained("/data/vit-b-32.safetensors")
        'a local weights file (`vit-b-32.safetensors`)'
    """
    if pretrained is None or str(pretrained).strip().lower() in ("", "none", "random"):
        return "none (random initialisation)"
    if _is_path(str(pretrained)):
        return f"a local weights file (`{public_name(pretrained)}`)"
    return f"open_clip pretrained tag `{pretrained}`"


def training_summary(
    catalog: Catalog,
    pairs: PairSet,
    options: dict[str, Any],
    eval_catalog: Catalog | None = None,
) -> dict[str, Any]:
    """The training data statistics and options shown on the card (file names, never paths).

    Args:
        catalog: the training catalogue.
        pairs: the training pairs built from it.
        options: the run's options (:meth:`rcml_st.training.TrainConfig.options`).
        eval_catalog: the ``--eval`` catalogue, if any.
    """
    edges: dict[str, int] = {}
    for edge in catalog.edges:
        edges[edge.relation] = edges.get(edge.relation, 0) + 1
    summary = {
        "data_file": public_name(options.get("data")),
        "items": len(catalog.items),
        "with_text": sum(1 for item in catalog.items if item.text),
        "with_image": sum(1 for item in catalog.items if item.image),
        "relations": [{"name": name, "edges": edges.get(name, 0)} for name in pairs.data_relations],
        "pairs": len(pairs),
        "intra_pairs": pairs.n_intra,
        "inter_pairs": pairs.n_inter,
        "same_item": pairs.same_item,
        "eval_file": public_name(options.get("eval_file")),
        "eval_items": len(eval_catalog.items) if eval_catalog is not None else None,
    }
    keys = (
        "epochs",
        "batch_size",
        "lr",
        "beta",
        "temperature",
        "weight_decay",
        "warmup",
        "pairs_per_epoch",
        "freeze_backbone",
        "conditioning",
        "intra_modal",
        "inter_sample",
        "seed",
    )
    summary["options"] = {key: options[key] for key in keys if options.get(key) is not None}
    return summary


def evaluation_summary(report: EvaluationReport, data_file: str | None = None) -> dict[str, Any]:
    """The evaluation table of the card: retrieval per direction for RCML and each baseline."""
    settings = report.settings
    rows = []
    for name, result in report.methods.items():
        metrics = result.retrieval.metrics
        rows.append(
            {
                "name": METHOD_NAMES.get(name, f"`{name}`"),
                "hit5": {d: metrics.get(d, {}).get("hit@5") for d in DIRECTION_NAMES},
                "mrr": {d: metrics.get(d, {}).get("mrr") for d in DIRECTION_NAMES},
                "type_top1": result.relation_type.get("top1"),
                "validity": result.validity.get("accuracy"),
            }
        )
    return {
        "data_file": public_name(data_file),
        "items": settings.get("items"),
        "negatives": settings.get("negatives"),
        "seed": settings.get("seed"),
        "queries": settings.get("queries_per_direction", {}),
        "methods": rows,
    }


def describe_training(
    model: SentenceTransformer,
    catalog: Catalog,
    pairs: PairSet,
    options: dict[str, Any],
    eval_catalog: Catalog | None = None,
) -> None:
    """Records the training data statistics on the model's card (when it is an RCML card)."""
    card = model.model_card_data
    if isinstance(card, RCMLModelCardData):
        card.training = training_summary(catalog, pairs, options, eval_catalog)


def record_evaluation(
    model: SentenceTransformer,
    report: EvaluationReport,
    eval_file: Any,
    say: Callable[[str], None] | None = None,
) -> None:
    """Puts the evaluation of the trained model and the baselines on the ``--eval`` file on the card.

    The card is handed the results (``rcml_st.evaluation.report.evaluate_catalog``'s report, as
    ``rcml-st train`` computes it); it runs nothing itself.
    """
    card = model.model_card_data
    if isinstance(card, RCMLModelCardData):
        card.evaluation = evaluation_summary(report, eval_file)
    if say is not None:
        scores = ", ".join(
            f"{name} {_fmt(result.retrieval.metrics['avg']['hit@5'])}"
            for name, result in report.methods.items()
        )
        say(f"evaluation on {public_name(eval_file)} for the model card, Hit@5 (avg): {scores}")


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


@dataclass
class RCMLModelCardData(SentenceTransformerModelCardData):
    """Model-card data of an RCML model (sentence-transformers' card data, RCML's template).

    Args:
        training: training data statistics (:func:`training_summary`), set by ``rcml-st train``.
        evaluation: ``--eval`` results with the baselines (:func:`evaluation_summary`).
        **kwargs: the fields of ``SentenceTransformerModelCardData`` (``model_id``, ``license``,
            ``language``, ...).

    Example:
        >>> import rcml_st
        >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
        >>> type(model.model_card_data).__name__
        'RCMLModelCardData'
        >>> model.model_card_data.model_id = "org/rcml-baby"
        >>> 'rcml_st.load("org/rcml-baby")' in model.model_card_data.generate_usage_snippet()
        True
    """

    task_name: str = "relation-conditioned multimodal retrieval"
    tags: list[str] = field(
        default_factory=lambda: [
            "sentence-transformers",
            "feature-extraction",
            "rcml",
            "multimodal",
            "image-text-retrieval",
            "relation-conditioned",
            "open_clip",
        ]
    )
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    # The widget shows item texts (feature extraction), not sentence pairs to compare.
    pipeline_tag: str = field(default="feature-extraction", init=False)
    template_path: Path = field(default=TEMPLATE, init=False, repr=False)

    # -- what the card shows -------------------------------------------------------------------
    def _modules(self) -> tuple[Any, Any] | tuple[None, None]:
        model = self.model
        if model is None or len(model) < 2:
            return None, None
        return model[0], model[1]

    def relations(self) -> list[str]:
        """The model's relation vocabulary (saved with it)."""
        _, pooling = self._modules()
        return list(getattr(pooling, "relations", []) or [])

    def example_texts(self) -> list[str]:
        """Item texts for the widget and the usage snippet (training items when known)."""
        texts = [w["text"] for w in self.widget if isinstance(w, dict) and w.get("text")]
        return texts[:3] or ["Organic cotton nursing pillow, sage green", "Glass baby bottle, 240 ml"]

    def load_name(self) -> str:
        """What the snippets load: the Hub id when known, else the name of the folder the card is
        written into (``rcml-baby`` for ``runs/rcml-baby``: no local path), else the placeholder that
        sentence-transformers replaces with the id on ``push_to_hub``."""
        return self.model_id or (self.save_dir and published_name(self.save_dir)) or _SNIPPET_PLACEHOLDER

    def set_base_model(self, model_id: str, revision: str | None = None) -> bool:
        """No Hub base model: the backbone is an open_clip model (shown in the card's details)."""
        return False

    def run_usage_snippet(self) -> None:
        """Nothing to compute: the usage snippet shows shapes, not similarity scores."""
        self.usage_examples = self.example_texts()
        self.similarities = None

    def _load_name_comment(self, name: str) -> list[str]:
        if name == self.model_id:
            return []
        if name == _SNIPPET_PLACEHOLDER:
            return [f"# {name}: this model's folder, or its Hub id once pushed (org/name)"]
        return [f"# {name!r} is this model's folder (run from the folder that holds it), or its Hub id"]

    def generate_usage_snippet(self) -> str:
        """The Python usage snippet: load, encode under a relation, mixed inputs, similarities."""
        name = self.load_name()
        quoted = json.dumps(name)
        query = {"text": self.example_texts()[0], "relation": (self.relations() or ["matches in colour"])[-1]}
        relations = self.relations() or ["used together for infant feeding"]
        texts = self.example_texts()
        dimension = self.model.get_embedding_dimension() if self.model is not None else "D"
        lines = [
            "from sentence_transformers import SentenceTransformer",
            "",
            *self._load_name_comment(name),
            "# trust_remote_code=True lets sentence-transformers import the model's modules from the",
            "# rcml_st package (pip install rcml-st); nothing is downloaded and run from the Hub.",
            f'model = SentenceTransformer("{name}", trust_remote_code=True)',
            f"# or, the same in one call: import rcml_st; model = rcml_st.load({quoted})",
            "",
            "items = [",
            *(f"    {json.dumps(text, ensure_ascii=False)}," for text in texts),
            "]",
            "# The same items, encoded under a relation: related items come close under it.",
            f"embeddings = model.encode(items, relation={json.dumps(relations[0], ensure_ascii=False)})",
            "print(embeddings.shape)",
            f"# ({len(texts)}, {dimension})",
            "print(model.similarity(embeddings, embeddings))",
            "",
            "# Items may be texts, images (PIL or a path) or both, each with its own relation:",
            f"query = model.encode([{json.dumps(query, ensure_ascii=False)}])",
            "# No relation: the backbone's plain (relation-agnostic) embedding.",
            "plain = model.encode(items)",
        ]
        return "```python\n" + "\n".join(lines) + "\n```"

    def get_model_specific_metadata(self) -> dict[str, Any]:
        """Template variables: sentence-transformers' own plus the RCML ones."""
        metadata = super().get_model_specific_metadata()
        metadata.pop("model_string", None)  # module reprs may hold local paths
        clip, pooling = self._modules()
        relations = self.relations()
        evaluation = dict(self.evaluation)
        if evaluation.get("methods"):
            evaluation["rows"] = [
                {
                    "name": row["name"],
                    "hit5": [_fmt(row["hit5"].get(d)) for d in DIRECTION_NAMES],
                    "mrr": _fmt(row["mrr"].get("avg")),
                    "type_top1": _fmt(row.get("type_top1")),
                    "validity": _fmt(row.get("validity")),
                }
                for row in evaluation["methods"]
            ]
            evaluation["directions"] = list(DIRECTION_NAMES.values())
        requirements = dict(REQUIREMENTS)
        from rcml_st import __version__

        metadata.update(
            {
                "rcml_relations": relations,
                "rcml_backbone": public_name(getattr(clip, "backbone", None)),
                "rcml_pretrained": describe_pretrained(getattr(clip, "pretrained", None)),
                "rcml_beta": getattr(pooling, "beta", None),
                "rcml_heads": getattr(pooling, "num_heads", None),
                "rcml_load_name": self.load_name(),
                "rcml_example_relation": relations[0] if relations else "used together for infant feeding",
                "rcml_example_text": self.example_texts()[0],
                "rcml_training": self.training,
                "rcml_evaluation": evaluation,
                "rcml_requirements": requirements,
                "rcml_version": __version__,
                "rcml_paper": PAPER,
            }
        )
        return metadata


__all__ = [
    "RCMLModelCardData",
    "describe_pretrained",
    "describe_training",
    "evaluation_summary",
    "public_name",
    "record_evaluation",
    "training_summary",
]
