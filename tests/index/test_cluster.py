"""A real 3-peer Qdrant cluster on loopback: shards, replication 2, one peer killed mid-index.

The same pinned ``qdrant`` binary as the other server tests, in distributed mode
(``QDRANT__CLUSTER__ENABLED``, a p2p port per peer, ``--uri`` / ``--bootstrap``).
"""

from __future__ import annotations

import pytest

from rcml_st.data import generate_catalog, stream_catalog
from rcml_st.errors import ServiceError
from rcml_st.index import RelationIndex, RetryPolicy, index_catalog, search_index
from rcml_st.index._testing import QdrantCluster

pytestmark = pytest.mark.qdrant

RELATIONS = ["matches in colour", "made by the same brand"]


def test_peer_killed_mid_index_then_counts_are_exact_and_search_works(tmp_path, tiny_model, qdrant_binary):
    items = stream_catalog(
        generate_catalog(tmp_path / "data", n_items=60, holdout=0, image_size=16).train_path
    )
    with QdrantCluster(qdrant_binary, tmp_path / "cluster", peers=3) as cluster:
        entry = cluster.nodes[0]

        def connect() -> RelationIndex:
            return RelationIndex.connect(
                url=entry.url, grpc_port=entry.grpc_port, collection="c", retry=RetryPolicy(max_time=20)
            )

        def kill_a_peer(done: int, _total: int, _points: int) -> None:
            if done == 20:
                cluster.nodes[2].kill()

        index = connect()
        try:
            report = index_catalog(
                tiny_model,
                items,
                index,
                relations=RELATIONS,
                batch_size=10,
                progress=kill_a_peer,
                shards=3,
                replication_factor=2,
            )
            completed = True
        except ServiceError:
            completed = False  # a clean failure is allowed: the re-run below must complete it
        assert not cluster.nodes[2].running
        info = index.client.get_collection("c")
        assert info.config.params.shard_number == 3 and info.config.params.replication_factor == 2
        if not completed:
            report = index_catalog(tiny_model, items, connect(), relations=RELATIONS, batch_size=10)
        total = len(items)
        assert report.counts == dict.fromkeys(RELATIONS, total)
        assert index.count() == total * len(RELATIONS) and index.relations() == dict.fromkeys(
            RELATIONS, total
        )
        again = index_catalog(
            tiny_model, items, index, relations=RELATIONS, batch_size=60
        )  # still one peer down
        assert again.counts == dict.fromkeys(RELATIONS, total)

        query = next(iter(items)).id
        hits = search_index(None, index, "matches in colour", item_id=query, limit=5)
        assert len(hits) == 5 and query not in {h.item_id for h in hits}
        assert {h.payload["relation"] for h in hits} == {"matches in colour"}
        index.close()
