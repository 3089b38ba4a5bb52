"""What a model folder may make Python import, checked before anything is imported.

A saved sentence-transformers model names the class of each of its modules in ``modules.json``
(``"type": "rcml_st.modules.openclip.OpenCLIPInput"``), and loading imports those classes. A class
from anywhere else (``evilmod.Evil``, with an ``evilmod.py`` in the folder or the Hub repository)
would run that file's code. sentence-transformers imports such classes only with
``trust_remote_code=True``, which RCML models need for their own classes, and which its modules
also honour (a ``Transformer`` module runs the code a ``config.json`` names). So before loading,
:func:`check_module_types` reads ``modules.json`` (no import at all, not even torch) and allows:

- classes of the installed ``rcml_st`` package (their module file must lie inside it), and
- the ``sentence_transformers`` modules that load no code of the model's choosing
  (:data:`SAFE_SENTENCE_TRANSFORMERS`),

unless the caller opts in (``rcml_st.load(..., trust_remote_code=True)`` or
``--trust-remote-code``). The same check runs for a folder and for a Hub id's snapshot (a download
writes files; it imports nothing).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rcml_st.errors import UsageError

#: ``sentence_transformers`` module classes whose loading reads weights and settings only.
SAFE_SENTENCE_TRANSFORMERS = frozenset({"Normalize"})

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
# At least package.module.Class: a two-part reference ("rcml_st.Evil") is what transformers'
# dynamic loader resolves to a file of the model folder ("rcml_st.py"), so it is never ours.
_RCML_REF = re.compile(rf"^rcml_st(?:\.{_IDENTIFIER}){{2,}}$")
_ST_REF = re.compile(rf"^sentence_transformers(?:\.{_IDENTIFIER})+$")


def _package_root() -> Path:
    return Path(__file__).resolve().parent


def _is_rcml_class(ref: str) -> bool:
    """Whether ``ref`` names a module file of the installed ``rcml_st`` package (found on disk)."""
    if not _RCML_REF.match(ref):
        return False
    folder = _package_root()
    *packages, module, _class_name = ref.split(".")[1:]
    for package in packages:
        folder = folder / package
        if not (folder / "__init__.py").is_file():
            return False
    return (folder / f"{module}.py").is_file() or (folder / module / "__init__.py").is_file()


def _is_safe_sentence_transformers(ref: str) -> bool:
    return bool(_ST_REF.match(ref)) and ref.rsplit(".", 1)[1] in SAFE_SENTENCE_TRANSFORMERS


def module_types(directory: str | os.PathLike[str]) -> list[str]:
    """The module classes a saved model's ``modules.json`` names, in order.

    Raises:
        UsageError: no readable ``modules.json``, or one that is not a list of modules.

    Example:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "modules.json").write_text(json.dumps([{"type": "evilmod.Evil", "path": ""}]))
        >>> module_types(folder)
        ['evilmod.Evil']
    """
    path = Path(directory) / "modules.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable modules.json ({exc})") from None
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("type"), str) for entry in entries
    ):
        raise UsageError(f"{path}: modules.json must be a list of modules, each with a 'type'")
    return [entry["type"] for entry in entries]


def foreign_module_types(directory: str | os.PathLike[str]) -> list[str]:
    """The classes ``modules.json`` names that are not RCML's own (nor safe sentence-transformers ones).

    Example:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> types = ["rcml_st.modules.openclip.OpenCLIPInput", "rcml_st.Evil", "evilmod.Evil",
        ...          "sentence_transformers.models.Normalize", "sentence_transformers.models.Transformer"]
        >>> _ = (folder / "modules.json").write_text(json.dumps([{"type": t} for t in types]))
        >>> foreign_module_types(folder)
        ['rcml_st.Evil', 'evilmod.Evil', 'sentence_transformers.models.Transformer']
    """
    return [
        ref
        for ref in module_types(directory)
        if not (_is_rcml_class(ref) or _is_safe_sentence_transformers(ref))
    ]


def check_module_types(
    directory: str | os.PathLike[str], *, trust_remote_code: bool = False, name: str | None = None
) -> list[str]:
    """Refuses a model whose ``modules.json`` names code from elsewhere, unless trusted.

    Nothing is imported: this reads one JSON file.

    Args:
        directory: the model folder (for a Hub id, its snapshot in the local cache).
        trust_remote_code: the caller's explicit opt-in to import any class the folder names.
        name: how the user named the model (for the message; default: the folder).

    Returns:
        The foreign classes that will be imported (empty unless ``trust_remote_code``).

    Raises:
        UsageError: a foreign class without ``trust_remote_code`` (exit code 2 on the CLI).

    Example:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "modules.json").write_text(json.dumps([{"type": "evilmod.Evil"}]))
        >>> check_module_types(folder, name="evil")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.errors.UsageError: evil: modules.json names the module class 'evilmod.Evil', ...
        >>> check_module_types(folder, trust_remote_code=True)
        ['evilmod.Evil']
    """
    foreign = foreign_module_types(directory)
    if foreign and not trust_remote_code:
        classes = ", ".join(repr(ref) for ref in foreign)
        raise UsageError(
            f"{name or directory}: modules.json names the module class {classes}, which is not part of "
            "rcml_st; loading it would run code chosen by the model's files, so nothing was loaded. "
            "If you trust this model, pass --trust-remote-code (rcml_st.load(..., trust_remote_code=True))"
        )
    return foreign


def is_rcml_folder(directory: str | os.PathLike[str]) -> bool:
    """Whether a saved model names ``rcml_st`` modules and, besides them, only sentence-transformers ones.

    A folder that also names modules from any other package is not: load it as a plain model
    (:func:`rcml_st.model.load_plain`), which refuses to import them.

    Example:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> types = ["rcml_st.modules.openclip.OpenCLIPInput", "sentence_transformers.models.Normalize"]
        >>> _ = (folder / "modules.json").write_text(json.dumps([{"type": t} for t in types]))
        >>> is_rcml_folder(folder)
        True
    """
    types = module_types(directory)
    return any(t.startswith("rcml_st.") for t in types) and all(
        t.startswith(("rcml_st.", "sentence_transformers.")) for t in types
    )


__all__ = [
    "SAFE_SENTENCE_TRANSFORMERS",
    "check_module_types",
    "foreign_module_types",
    "is_rcml_folder",
    "module_types",
]
