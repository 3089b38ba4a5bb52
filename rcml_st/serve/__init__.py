"""``rcml-st serve``: relation-conditioned search over HTTP, and a page to look at neighbourhoods.

Needs the ``serve`` extra (``pip install "rcml-st[serve]"``: FastAPI, uvicorn, python-multipart).
:class:`SearchService` answers the queries (reusing :mod:`rcml_st.index`), :class:`QueryBatcher`
encodes text and image queries of concurrent requests together, :func:`create_app` is the
FastAPI application with the page at ``/``.

Example:
    >>> import rcml_st
    >>> from rcml_st.index import RelationIndex
    >>> from rcml_st.serve import SearchService, create_app
    >>> service = SearchService(rcml_st.load("rcml-demo/model"),  # doctest: +SKIP
    ...                         RelationIndex.connect(path="rcml-demo/qdrant"))
    >>> app = create_app(service)  # doctest: +SKIP
"""

from __future__ import annotations

from rcml_st.serve.batching import QueryBatcher
from rcml_st.serve.service import NotFound, SearchService

__all__ = ["NotFound", "QueryBatcher", "SearchService", "create_app"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """:func:`rcml_st.serve.app.create_app` (imported on use: FastAPI is only needed to serve)."""
    from rcml_st.serve.app import create_app as make

    return make(*args, **kwargs)
