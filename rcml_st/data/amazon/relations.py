"""Natural-language descriptions for Amazon's relation lists.

RCML conditions embeddings on a relation *description*, so the raw field names of the metadata
(``also_bought``) become phrases the text tower can read. The defaults below can be replaced
per relation with a JSON file (``--relation-names``); mapping a relation to ``null`` leaves it
out of the output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from rcml_st.data.amazon.formats import RELATION_FIELDS
from rcml_st.errors import InputDataError

#: Raw relation name (any format) -> default description.
DEFAULT_RELATION_NAMES: dict[str, str] = {
    "also_bought": "also bought by the same customers",
    "also_buy": "also bought by the same customers",
    "also_viewed": "viewed as an alternative to",
    "also_view": "viewed as an alternative to",
    "bought_together": "frequently bought together",
    "buy_after_viewing": "bought after viewing",
}

#: The co-purchase ("bought") relations: the edges ``--cluster`` groups into relation types.
#: ``buy_after_viewing`` is left out: a product bought *instead of* the one viewed is a substitute,
#: not something used together with it.
CO_PURCHASE = frozenset({"also_bought", "also_buy", "bought_together"})

KNOWN_RELATIONS = frozenset(name for names in RELATION_FIELDS.values() for name in names)


def relation_names(overrides: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """The description of every raw relation: the defaults with ``overrides`` applied.

    Args:
        overrides: raw name -> description, or ``None`` to leave that relation out.

    Raises:
        ValueError: for an unknown raw name or a description that is not a non-empty string.

    Example:
        >>> names = relation_names({"also_viewed": None, "bought_together": "used together"})
        >>> names["also_viewed"], names["bought_together"], names["also_bought"]
        (None, 'used together', 'also bought by the same customers')
    """
    names: dict[str, str | None] = dict(DEFAULT_RELATION_NAMES)
    for raw, description in (overrides or {}).items():
        if raw not in KNOWN_RELATIONS:
            known = ", ".join(sorted(KNOWN_RELATIONS))
            raise ValueError(f"unknown relation {raw!r} (known: {known})")
        if description is not None and (not isinstance(description, str) or not description.strip()):
            raise ValueError(f"the description of {raw!r} must be a non-empty string or null")
        names[raw] = description.strip() if description is not None else None
    return names


def load_relation_names(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """Reads a ``--relation-names`` file: a JSON object of raw name -> description (or null).

    Example file::

        {"bought_together": "used together for the same task", "also_viewed": null}

    Raises:
        InputDataError: naming the file when it is missing, not JSON, or not such an object.
    """
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputDataError("relation names file not found", path=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read relation names file: {exc}", path=where) from None
    except json.JSONDecodeError as exc:
        raise InputDataError(f"bad JSON: {exc.msg}", path=where, line=exc.lineno) from None
    if not isinstance(data, dict):
        raise InputDataError("expected a JSON object of relation name -> description", path=where)
    try:
        return relation_names(data)
    except ValueError as exc:
        raise InputDataError(str(exc), path=where) from None
