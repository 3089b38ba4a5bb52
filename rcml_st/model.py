"""Building, loading and inspecting RCML ``SentenceTransformer`` models."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sentence_transformers import SentenceTransformer

from rcml_st.errors import RCMLError, UsageError
from rcml_st.hub import is_hub_id, locate_model
from rcml_st.model_card import RCMLModelCardData
from rcml_st.modules import DEFAULT_BETA, OpenCLIPInput, RelationPooling, rcml_modules
from rcml_st.safe_load import check_module_types

logger = logging.getLogger("rcml_st")


def build_model(
    backbone: str | os.PathLike = "ViT-B-32",
    pretrained: str | os.PathLike | None = None,
    *,
    beta: float = DEFAULT_BETA,
    num_heads: int = 8,
    relations: list[str] | None = None,
    device: str | None = None,
    image_stages: list[int] | None = None,
    image_size: int | None = None,
) -> SentenceTransformer:
    """Builds a new RCML model: an open_clip backbone followed by relation pooling.

    Args:
        backbone: an open_clip model name (``"ViT-B-32"``) or a path to a model-config JSON.
        pretrained: an open_clip pretrained tag, a local weights file, or ``None`` (random init).
        beta: weight of CLIP's global embedding in the mix (1.0 reproduces CLIP exactly).
        num_heads: attention heads of the pooling.
        relations: an initial relation vocabulary (training sets it from the data).
        device: ``"cpu"``, ``"cuda"``, ... (default: sentence-transformers' choice).
        image_stages: earlier image stages whose tokens the relation pooling also attends to
            (timm ConvNet image towers such as ``rcml-lite``'s; see
            :class:`~rcml_st.modules.towers.StageHeads`); default: the last feature map only.
        image_size: ``rcml-lite`` only: its image size in pixels (default 160).

    Returns:
        A ``SentenceTransformer`` whose ``encode`` takes ``relation=`` (see :mod:`rcml_st`).

    Example:
        >>> model = build_model("rcml-tiny", device="cpu")
        >>> item = {"text": "nursing pillow"}
        >>> model.encode(item, relation="used together for infant feeding").shape
        (32,)
    """
    clip = OpenCLIPInput(
        str(backbone),
        None if pretrained is None else str(pretrained),
        image_stages=image_stages,
        image_size=image_size,
    )
    pooling = RelationPooling(
        clip.get_embedding_dimension(), num_heads=num_heads, beta=beta, relations=relations
    )
    return SentenceTransformer(
        modules=[clip, pooling],
        device=device,
        similarity_fn_name="cosine",
        model_card_data=RCMLModelCardData(local_files_only=True),
    )


def load(
    name_or_path: str | os.PathLike,
    device: str | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> SentenceTransformer:
    """Loads a saved RCML model: a local folder or a Hugging Face Hub id.

    This is ``SentenceTransformer(name_or_path, trust_remote_code=True)``, with the model found by
    :func:`rcml_st.hub.resolve_model` and then loaded from its folder with no network access:
    sentence-transformers 6 imports module classes from outside its own namespace (here
    ``rcml_st.modules``) only when the caller passes ``trust_remote_code=True``. Before anything
    is imported, :func:`rcml_st.safe_load.check_module_types` makes sure that ``modules.json``
    names only classes of ``rcml_st`` (and code-free sentence-transformers modules): a model
    whose files name other code is refused unless ``trust_remote_code=True`` is passed here.

    Args:
        name_or_path: a folder written by ``rcml-st train`` or ``model.save_pretrained``, or a
            Hub id such as ``"org/rcml-baby"`` (from the local cache when ``HF_HUB_OFFLINE=1``).
        device: where to load it (default: sentence-transformers' choice).
        revision: a branch, tag or commit, for a Hub id.
        trust_remote_code: also import module classes from outside ``rcml_st`` that the model's
            files name (this runs their code: only for a model you trust).

    Raises:
        UsageError: when there is no such model, it is not an RCML one, it names code from
            elsewhere without ``trust_remote_code``, or it cannot be loaded (a broken file).
        ServiceError: when the Hub cannot be reached for a model that is not cached.

    Example:
        >>> import rcml_st
        >>> model = rcml_st.load("rcml-baby")  # doctest: +SKIP
        >>> model = rcml_st.load("org/rcml-baby")  # doctest: +SKIP
        >>> model.encode(["nursing pillow"], relation="used together for infant feeding")  # doctest: +SKIP
    """
    directory = locate_model(name_or_path, revision=revision)
    foreign = check_module_types(directory, trust_remote_code=trust_remote_code, name=str(name_or_path))
    if foreign:
        logger.warning("%s: trust_remote_code: importing %s from the model's files", name_or_path, foreign)
    with _loading(name_or_path):
        model = SentenceTransformer(
            str(directory),
            device=device,
            trust_remote_code=True,
            local_files_only=True,
            model_card_data=RCMLModelCardData(local_files_only=True),
        )
    if not isinstance(model[0], OpenCLIPInput) or len(model) < 2 or not isinstance(model[1], RelationPooling):
        raise UsageError(f"{name_or_path} is a sentence-transformers model but not an RCML one")
    if is_hub_id(str(name_or_path)) and not Path(name_or_path).exists():
        model.model_card_data.set_model_id(str(name_or_path))
    return model


def load_plain(name_or_path: str | os.PathLike, device: str | None = None) -> SentenceTransformer:
    """Loads a sentence-transformers model that is not RCML (to compare with), never running code it ships.

    Without ``trust_remote_code`` sentence-transformers imports only its own module classes, and
    refuses a model whose files name others.

    Raises:
        UsageError: no such model, or one that cannot be loaded (the message names it and says why).
    """
    directory = locate_model(name_or_path)
    with _loading(name_or_path):
        return SentenceTransformer(
            str(directory), device=device, trust_remote_code=False, local_files_only=True
        )


@contextmanager
def _loading(name: str | os.PathLike) -> Iterator[None]:
    """Turns a failure to load a model folder (a broken file, a missing class) into one line naming it."""
    try:
        yield
    except RCMLError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot load the model in {name}: {detail}") from exc


def relation_vocabulary(model: SentenceTransformer) -> list[str]:
    """The relation descriptions the model was trained on (saved with it)."""
    return list(rcml_modules(model)[1].relations)


def set_relation_vocabulary(model: SentenceTransformer, relations: list[str]) -> None:
    """Records the relation vocabulary on the model (saved with it)."""
    rcml_modules(model)[1].relations = sorted(dict.fromkeys(relations))
