"""Where a model lives: a local folder, or a Hugging Face Hub id resolved to a folder of the cache.

Everything that takes a model (``rcml_st.load``, ``rcml-st evaluate|index|search --model``)
resolves it here, so ``rcml-baby`` (a folder) and ``org/rcml-baby`` (a Hub id) work alike. A Hub
id is served from the local Hugging Face cache (``$HF_HOME/hub``) when ``HF_HUB_OFFLINE=1``, and
downloaded into it otherwise. This module imports no torch: a missing model fails in a second.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rcml_st.errors import ServiceError, UsageError

# The Hub's repository ids: "namespace/name", letters, digits, "-", "_" and "." (not at the ends).
_REPO_ID = re.compile(r"^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?/[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?$")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face Hub model id (``org/name``).

    Example:
        >>> is_hub_id("org/rcml-baby"), is_hub_id("rcml-baby"), is_hub_id("runs/a/b"), is_hub_id("./x")
        (True, False, False, False)
    """
    return bool(_REPO_ID.match(name)) and ".." not in name


def resolve_model(name_or_path: str | os.PathLike[str], revision: str | None = None) -> Path:
    """The local folder of a model given as a folder path or as a Hub id.

    A path that exists is returned as it is. Otherwise ``org/name`` is looked up on the Hugging
    Face Hub through ``huggingface_hub.snapshot_download``: from the local cache only when
    ``HF_HUB_OFFLINE=1``, else downloaded (or refreshed) into the cache.

    Args:
        name_or_path: a model folder (``rcml-baby``) or a Hub id (``org/rcml-baby``).
        revision: a branch, tag or commit of the Hub repository (default: ``main``).

    Returns:
        The folder holding the model's files (for a Hub id, a snapshot in the cache).

    Raises:
        UsageError: no such folder, no such model on the Hub, or (offline) not in the cache.
        ServiceError: the Hub could not be reached and the model is not in the cache.

    Example:
        >>> resolve_model("no-such-model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.errors.UsageError: model directory not found: no-such-model (nor is it a Hub id ...)
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if not is_hub_id(name):
        raise UsageError(f"model directory not found: {name} (nor is it a Hub id such as org/name)")

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        return Path(snapshot_download(name, revision=revision, local_files_only=offline))
    except LocalEntryNotFoundError as exc:
        if offline:
            raise UsageError(
                f"model not found: {name} is not a folder, and not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}); HF_HUB_OFFLINE is set, so the Hub was not asked"
            ) from exc
        raise ServiceError(
            f"model {name}: the Hugging Face Hub could not be reached and the model is not in the "
            "local cache; check the network (or set HF_HUB_OFFLINE=1 to use cached models only)"
        ) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:  # includes gated repositories
        what = f"revision {revision!r} of {name}" if isinstance(exc, RevisionNotFoundError) else name
        raise UsageError(
            f"model not found: {what} is not a folder, nor a model on the Hugging Face Hub that this "
            "account can read (log in with `hf auth login` for a private one)"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(f"model {name}: downloading from the Hugging Face Hub failed: {detail}") from exc


def locate_model(name_or_path: str | os.PathLike[str], revision: str | None = None) -> Path:
    """The folder of a saved sentence-transformers model (:func:`resolve_model`), with a ``modules.json``.

    Raises:
        UsageError: no such folder or Hub model, or a folder that is not a saved model.
        ServiceError: the Hub could not be reached and the model is not in the cache.

    Example:
        >>> import tempfile
        >>> locate_model(tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.errors.UsageError: ... is not a saved model directory (no modules.json)
    """
    directory = resolve_model(name_or_path, revision=revision)
    if not directory.is_dir():
        raise UsageError(f"{name_or_path} is not a model directory")
    if not (directory / "modules.json").is_file():
        raise UsageError(f"{name_or_path} is not a saved model directory (no modules.json)")
    return directory


__all__ = ["is_hub_id", "locate_model", "resolve_model"]
