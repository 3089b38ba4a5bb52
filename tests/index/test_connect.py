"""RelationIndex.connect: option handling (nothing is sent, so no server is needed)."""

from __future__ import annotations

import pytest

from rcml_st.errors import UsageError
from rcml_st.index import RelationIndex


@pytest.mark.parametrize(
    ("url", "grpc_port", "grpc"),
    [
        ("http://localhost:6333", None, True),
        ("https://xyz.cloud.example:6333", None, True),
        ("https://xyz.cloud.example", None, True),
        ("http://localhost:8080", None, False),  # gRPC port unknown behind a non-standard port
        ("http://localhost:8080", 9090, True),
    ],
)
def test_grpc_is_used_when_its_port_is_known(url, grpc_port, grpc):
    index = RelationIndex.connect(url=url, grpc_port=grpc_port)
    assert index._grpc is grpc
    assert index.target == url
    assert index.embedded is False


def test_https_and_api_key_from_environment(monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    index = RelationIndex.connect(url="https://xyz.cloud.example:6333")
    assert index.client.init_options["api_key"] == "from-env"
    assert index.client._client._https is True  # the URL's scheme decides
    explicit = RelationIndex.connect(url="https://xyz.cloud.example", api_key="given")
    assert explicit.client.init_options["api_key"] == "given"


def test_prefer_grpc_false_forces_rest():
    assert RelationIndex.connect(url="http://localhost:6333", prefer_grpc=False)._grpc is False


@pytest.mark.parametrize("url", ["localhost:6333", "ftp://host", "http://", "http://host:notaport"])
def test_malformed_url_is_a_usage_error(url):
    with pytest.raises(UsageError, match="qdrant-url"):
        RelationIndex.connect(url=url)


def test_empty_collection_name_is_refused():
    with pytest.raises(UsageError):
        RelationIndex.connect(url="http://localhost:6333", collection="")
