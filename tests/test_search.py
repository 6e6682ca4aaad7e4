"""Streaming exact top-k: equal to a brute-force reference, ties by stream position, bounded state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hbkit.errors import ConfigError, DataError
from hbkit.engine.search import StreamingTopK, topk_search


def reference_topk(q: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full score matrix in float64; order = score descending, then position ascending."""
    s = q.astype(np.float64) @ docs.astype(np.float64).T
    pos = np.arange(docs.shape[0])
    order = np.stack([np.lexsort((pos, -row))[:k] for row in s])
    return np.take_along_axis(s, order, 1), order


def stream(searcher: StreamingTopK, docs: np.ndarray, sizes) -> None:
    start = 0
    for n in sizes:
        searcher.add(torch.from_numpy(docs[start:start + n]), [f"{i}#0" for i in range(start, start + n)])
        start += n
    assert start == docs.shape[0]


@pytest.mark.parametrize("sizes, doc_block, block_bytes", [
    ([2000], 65536, 2**28),                       # one chunk, one block
    ([333, 1000, 1, 666], 257, 4 * 257 * 7),      # uneven chunks, doc sub-blocks, 7-query blocks
    ([1] * 40 + [1960], 100, 4 * 100 * 1),        # single-document chunks, one query per block
])
def test_integer_embeddings_match_reference_exactly_with_ties(sizes, doc_block, block_bytes):
    # Small integer vectors: dot products are exact in float32 and heavily tied, so the tie rule
    # (earlier position first, also at the top-k boundary and across chunks) is tested exactly.
    rng = np.random.default_rng(0)
    q = rng.integers(-2, 3, size=(23, 4)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(2000, 4)).astype(np.float32)
    k = 50
    searcher = StreamingTopK(q, k, doc_block=doc_block, block_bytes=block_bytes)
    stream(searcher, docs, sizes)
    ref_s, ref_pos = reference_topk(q, docs, k)
    scores, ids = searcher.result()
    assert scores.shape == (23, k) and len(ids) == 23
    np.testing.assert_array_equal(searcher.positions().numpy(), ref_pos)
    np.testing.assert_array_equal(scores.numpy(), ref_s.astype(np.float32))
    assert ids[3] == [f"{p}#0" for p in ref_pos[3]]
    assert (ref_s[:, 0] > ref_s[:, -1]).any() and len(set(ref_s[0])) < k  # the data really has ties


def test_all_tied_scores_keep_stream_order():
    q = torch.ones(3, 8)
    docs = torch.zeros(500, 8)
    scores, ids = topk_search(q, [(docs[:200], [f"a{i}" for i in range(200)]),
                                  (docs[200:], [f"b{i}" for i in range(300)])], k=10)
    assert ids == [[f"a{i}" for i in range(10)]] * 3
    assert torch.equal(scores, torch.zeros(3, 10))


def test_gaussian_embeddings_match_brute_force():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(40, 32, generator=g), dim=1)
    docs = torch.nn.functional.normalize(torch.randn(3000, 32, generator=g), dim=1)
    searcher = StreamingTopK(q, 100, doc_block=512)
    stream(searcher, docs.numpy(), [1000, 999, 1001])
    scores, ids = searcher.result()
    full = q @ docs.T
    ref = torch.topk(full, 100, dim=1).values
    assert torch.allclose(scores, ref, atol=1e-6)
    pos = searcher.positions()
    assert torch.allclose(torch.gather(full, 1, pos), scores, atol=1e-6)  # each score is its document's
    assert all(ids[i][j] == f"{int(pos[i, j])}#0" for i in range(40) for j in range(100))
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_fewer_documents_than_k_and_empty_chunks():
    q = torch.eye(3)
    s = StreamingTopK(q, 10)
    s.add(torch.empty(0, 3), [])
    assert s.result()[0].shape == (3, 0)
    s.add(torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]), ["x#1", "x#2"])
    scores, ids = s.result()
    assert scores.tolist() == [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]
    assert ids == [["x#1", "x#2"], ["x#2", "x#1"], ["x#1", "x#2"]]
    assert s.n_docs == 2
    run = s.to_run(["q1", "q2", "q3"])
    assert run == {"q1": {"x#1": 1.0, "x#2": 0.0}, "q2": {"x#2": 2.0, "x#1": 0.0}, "q3": {"x#1": 0.0, "x#2": 0.0}}


def test_state_stays_bounded_over_a_long_stream():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(5, 8, generator=g)
    s = StreamingTopK(q, 4)
    for c in range(200):
        s.add(torch.randn(50, 8, generator=g), [f"{c}#{i}" for i in range(50)])
    assert s.n_docs == 10_000
    assert s.result()[0].shape == (5, 4)
    assert len(s._names) <= 2 * 5 * 4 + 5 * 4  # only ids of current (and recent) top-k documents are kept


def test_numpy_inputs_and_dtype_conversion():
    q = np.eye(2, dtype=np.float64)
    docs = np.array([[0.5, 0.1], [0.2, 0.9]], dtype=np.float16)
    scores, ids = topk_search(q, [(docs, ["a", "b"])], k=1)
    assert scores.dtype == torch.float32 and ids == [["a"], ["b"]]


def test_errors_name_the_problem():
    q = torch.randn(2, 4)
    with pytest.raises(ConfigError, match="k must be"):
        StreamingTopK(q, 0)
    with pytest.raises(DataError, match="2-d"):
        StreamingTopK(torch.randn(4), 3)
    with pytest.raises(DataError, match="empty"):
        StreamingTopK(torch.empty(0, 4), 3)
    s = StreamingTopK(q, 3)
    with pytest.raises(DataError, match="dimension 5 but the queries have 4"):
        s.add(torch.randn(2, 5), ["a", "b"])
    with pytest.raises(DataError, match="3 rows but 2 doc_ids"):
        s.add(torch.randn(3, 4), ["a", "b"])
    with pytest.raises(DataError, match="not a string"):
        s.add(torch.randn(2, 4), [81674, "b"])
    with pytest.raises(DataError, match="NaN"):
        s.add(torch.tensor([[float("nan"), 0, 0, 0]]), ["a"])
    with pytest.raises(DataError, match="one id per query"):
        s.to_run(["only-one"])
    with pytest.raises(DataError, match=r"\(doc_emb, doc_ids\) pairs"):
        topk_search(q, [torch.randn(2, 4)], 2)
