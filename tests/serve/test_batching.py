"""The query batcher: concurrent queries share encoder calls, each gets its own vectors back."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rcml_st.serve.batching import QueryBatcher


class GatedEncoder:
    """Encodes query n under relation r as the vector [n's number, r's number]; the first call
    waits for ``release`` so that later queries pile up behind it."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, queries, relations):
        self.calls.append(([q["text"] for q in queries], list(relations)))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30)
        if any(q["text"] == "bad" for q in queries):
            raise OSError("cannot read the query image")
        out = np.zeros((len(relations), len(queries), 2), dtype=np.float32)
        for n, query in enumerate(queries):
            for r, relation in enumerate(relations):
                out[r, n] = [float(query["text"][1:]), float(relation[1:])]
        return out


def test_queries_waiting_behind_a_batch_are_encoded_together_under_the_union_of_relations():
    encoder = GatedEncoder()
    with QueryBatcher(encoder, max_batch=8) as batcher:
        first = batcher.submit({"text": "q0"}, ["r1"])
        assert encoder.entered.wait(30)
        waiting = [batcher.submit({"text": f"q{n}"}, ["r2"] if n % 2 else ["r1", "r3"]) for n in range(1, 6)]
        encoder.release.set()
        results = [future.result(30) for future in [first, *waiting]]
    assert [len(texts) for texts, _ in encoder.calls] == [1, 5]
    assert encoder.calls[1][1] == ["r2", "r1", "r3"]  # the union, in order of first appearance
    for n, vectors in enumerate(results):
        for relation, vector in vectors.items():
            assert vector.tolist() == [float(n), float(relation[1:])]
    assert set(results[1]) == {"r2"} and set(results[2]) == {"r1", "r3"}
    assert batcher.stats.to_dict() == {"batches": 2, "queries": 6, "largest": 5, "mean": 3.0}


def test_batches_are_bounded_by_max_batch():
    encoder = GatedEncoder()
    with QueryBatcher(encoder, max_batch=2) as batcher:
        first = batcher.submit({"text": "q0"}, ["r1"])
        assert encoder.entered.wait(30)
        rest = [batcher.submit({"text": f"q{n}"}, ["r1"]) for n in range(1, 6)]
        encoder.release.set()
        for future in [first, *rest]:
            future.result(30)
    assert [len(texts) for texts, _ in encoder.calls] == [1, 2, 2, 1]


def test_a_failing_query_fails_alone_and_its_batch_neighbours_still_get_answers():
    encoder = GatedEncoder()
    with QueryBatcher(encoder) as batcher:
        first = batcher.submit({"text": "q0"}, ["r1"])
        assert encoder.entered.wait(30)
        good = batcher.submit({"text": "q1"}, ["r1"])
        bad = batcher.submit({"text": "bad"}, ["r1"])
        encoder.release.set()
        first.result(30)
        assert good.result(30)["r1"].tolist() == [1.0, 1.0]
        with pytest.raises(OSError, match="cannot read"):
            bad.result(30)


def test_closed_batcher_refuses_new_queries_and_bad_arguments_are_refused():
    batcher = QueryBatcher(GatedEncoder())
    with pytest.raises(ValueError, match="at least one relation"):
        batcher.submit({"text": "q1"}, [])
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit({"text": "q1"}, ["r1"])
    with pytest.raises(ValueError, match="max_batch"):
        QueryBatcher(GatedEncoder(), max_batch=0)
