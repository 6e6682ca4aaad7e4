"""Streaming exact top-k: equal to a brute-force reference, ties by stream position, bounded state;
the faiss and torch backends give the same top-k."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from hbkit.errors import ConfigError, DataError
from hbkit.engine.search import StreamingTopK, resolve_backend, topk_search

HAS_FAISS = resolve_backend("auto") == "faiss"
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss is not installed (optional bench extra: "
                                                       "pip install faiss-cpu); the torch backend is tested")
BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]


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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes, doc_block, block_bytes", [
    ([2000], 65536, 2**28),                       # one chunk, one block
    ([333, 1000, 1, 666], 257, 4 * 257 * 7),      # uneven chunks, doc sub-blocks, 7-query blocks
    ([1] * 40 + [1960], 100, 4 * 100 * 1),        # single-document chunks, one query per block
])
def test_integer_embeddings_match_reference_exactly_with_ties(sizes, doc_block, block_bytes, backend):
    # Small integer vectors: dot products are exact in float32 and heavily tied, so the tie rule
    # (earlier position first, also at the top-k boundary and across chunks) is tested exactly.
    rng = np.random.default_rng(0)
    q = rng.integers(-2, 3, size=(23, 4)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(2000, 4)).astype(np.float32)
    k = 50
    searcher = StreamingTopK(q, k, doc_block=doc_block, block_bytes=block_bytes, backend=backend)
    assert searcher.backend == backend
    stream(searcher, docs, sizes)
    ref_s, ref_pos = reference_topk(q, docs, k)
    scores, ids = searcher.result()
    assert scores.shape == (23, k) and len(ids) == 23
    np.testing.assert_array_equal(searcher.positions().numpy(), ref_pos)
    np.testing.assert_array_equal(scores.numpy(), ref_s.astype(np.float32))
    assert ids[3] == [f"{p}#0" for p in ref_pos[3]]
    assert (ref_s[:, 0] > ref_s[:, -1]).any() and len(set(ref_s[0])) < k  # the data really has ties


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_tied_scores_keep_stream_order(backend):
    q = torch.ones(3, 8)
    docs = torch.zeros(500, 8)
    scores, ids = topk_search(q, [(docs[:200], [f"a{i}" for i in range(200)]),
                                  (docs[200:], [f"b{i}" for i in range(300)])], k=10, backend=backend)
    assert ids == [[f"a{i}" for i in range(10)]] * 3
    assert torch.equal(scores, torch.zeros(3, 10))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gaussian_embeddings_match_brute_force(backend):
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(40, 32, generator=g), dim=1)
    docs = torch.nn.functional.normalize(torch.randn(3000, 32, generator=g), dim=1)
    searcher = StreamingTopK(q, 100, doc_block=512, backend=backend)
    stream(searcher, docs.numpy(), [1000, 999, 1001])
    scores, ids = searcher.result()
    full = q @ docs.T
    ref = torch.topk(full, 100, dim=1).values
    assert torch.allclose(scores, ref, atol=1e-6)
    pos = searcher.positions()
    assert torch.allclose(torch.gather(full, 1, pos), scores, atol=1e-6)  # each score is its document's
    assert all(ids[i][j] == f"{int(pos[i, j])}#0" for i in range(40) for j in range(100))
    assert (scores[:, :-1] >= scores[:, 1:]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_fewer_documents_than_k_and_empty_chunks(backend):
    q = torch.eye(3)
    s = StreamingTopK(q, 10, backend=backend)
    s.add(torch.empty(0, 3), [])
    assert s.result()[0].shape == (3, 0)
    s.add(torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]), ["x#1", "x#2"])
    scores, ids = s.result()
    assert scores.tolist() == [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]
    assert ids == [["x#1", "x#2"], ["x#2", "x#1"], ["x#1", "x#2"]]
    assert s.n_docs == 2
    run = s.to_run(["q1", "q2", "q3"])
    assert run == {"q1": {"x#1": 1.0, "x#2": 0.0}, "q2": {"x#2": 2.0, "x#1": 0.0}, "q3": {"x#1": 0.0, "x#2": 0.0}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_stays_bounded_over_a_long_stream(backend):
    g = torch.Generator().manual_seed(2)
    q = torch.randn(5, 8, generator=g)
    s = StreamingTopK(q, 4, backend=backend)
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
    big = torch.zeros(1000, 4)
    big[700, 2], big[900, 1] = float("inf"), float("-inf")  # the sum is NaN: found by the fast check
    with pytest.raises(DataError, match="NaN or infinite"):
        s.add(big, [str(i) for i in range(1000)])
    assert s.n_docs == 0
    with pytest.raises(DataError, match="one id per query"):
        s.to_run(["only-one"])
    with pytest.raises(DataError, match=r"\(doc_emb, doc_ids\) pairs"):
        topk_search(q, [torch.randn(2, 4)], 2)


def test_finite_values_whose_sum_overflows_are_accepted():
    # The sum of these finite values overflows to inf: the element-wise check must accept them.
    s = StreamingTopK(torch.tensor([[1e-30, 0.0]]), 2, backend="torch")
    s.add(torch.tensor([[3e38, 1.0], [3e38, 2.0], [1.0, 0.0]]), ["a", "b", "c"])
    scores, ids = s.result()
    assert ids == [["a", "b"]]
    assert scores[0].tolist() == pytest.approx([3e8, 3e8], rel=1e-6)


def test_backend_resolution_and_errors(monkeypatch):
    q = torch.randn(2, 4)
    assert StreamingTopK(q, 3, backend="torch").backend == "torch"
    assert resolve_backend("auto") == ("faiss" if HAS_FAISS else "torch")
    for bad in ("gpu", "FAISS", None, 1):
        with pytest.raises(ConfigError, match=r"backend must be one of 'auto', 'faiss', 'torch', got"):
            StreamingTopK(q, 3, backend=bad)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(ConfigError, match=r"needs faiss, which is not installed: pip install faiss-cpu"):
        StreamingTopK(q, 3, backend="faiss")
    s = StreamingTopK(q, 3)  # auto falls back to torch
    assert s.backend == "torch"
    s.add(torch.eye(4), ["a", "b", "c", "d"])
    assert s.result()[0].shape == (2, 3)


@needs_faiss
def test_faiss_alone_breaks_ties_differently_and_the_searcher_fixes_it():
    import faiss

    rng = np.random.default_rng(3)
    q = rng.integers(-1, 2, size=(30, 3)).astype(np.float32)
    docs = rng.integers(-1, 2, size=(400, 3)).astype(np.float32)
    k = 20
    ref_s, ref_pos = reference_topk(q, docs, k)
    _, raw = faiss.knn(q, docs, k, metric=faiss.METRIC_INNER_PRODUCT)
    assert (raw != ref_pos).any(axis=1).sum() >= 10  # faiss's own order among ties is not by position
    searcher = StreamingTopK(q, k, backend="faiss")
    stream(searcher, docs, [400])
    np.testing.assert_array_equal(searcher.positions().numpy(), ref_pos)
    np.testing.assert_array_equal(searcher.result()[0].numpy(), ref_s.astype(np.float32))


@needs_faiss
@pytest.mark.parametrize("data", ["gaussian", "integer"])
def test_faiss_and_torch_backends_agree(data):
    # Chunks smaller and larger than k, one of exactly k and one of k + 1; duplicated documents
    # (tied scores at any rank); integer data has exact, heavily tied scores.
    rng = np.random.default_rng(4)
    if data == "gaussian":
        q = rng.standard_normal((64, 48), dtype=np.float32)
        docs = rng.standard_normal((2500, 48), dtype=np.float32)
        docs[1500:1600] = docs[100:200]  # exact duplicates across chunks
    else:
        q = rng.integers(-2, 3, size=(64, 6)).astype(np.float32)
        docs = rng.integers(-2, 3, size=(2500, 6)).astype(np.float32)
    k = 60
    sizes = [7, 60, 61, 1, 300, 2000, 71]
    out = {}
    for backend in ("torch", "faiss"):
        s = StreamingTopK(q, k, doc_block=256, block_bytes=4 * 256 * 16, backend=backend)
        stream(s, docs, sizes)
        out[backend] = s
    t_s, t_ids = out["torch"].result()
    f_s, f_ids = out["faiss"].result()
    assert f_ids == t_ids
    np.testing.assert_array_equal(out["faiss"].positions().numpy(), out["torch"].positions().numpy())
    np.testing.assert_allclose(f_s.numpy(), t_s.numpy(), rtol=0, atol=1e-5)
    ref_s, ref_pos = reference_topk(q, docs, k)
    np.testing.assert_array_equal(out["faiss"].positions().numpy(), ref_pos)
    np.testing.assert_allclose(f_s.numpy(), ref_s, rtol=0, atol=1e-5)
    if data == "gaussian":  # the duplicates make it to the top-k next to their originals
        pos = out["faiss"].positions().numpy()
        assert any(p + 1400 in row for row in pos for p in row if 100 <= p < 200)


@needs_faiss
def test_faiss_backend_handles_scores_that_overflow_to_minus_infinity():
    # faiss returns id -1 for a score of -inf; those queries are recomputed with torch.
    q = torch.tensor([[1e30, 0.0], [0.0, 1.0]])
    docs = torch.tensor([[-1e30, 0.0], [-2e30, 0.0], [0.0, 1.0]])
    for backend in ("torch", "faiss"):
        scores, ids = topk_search(q, [(docs[:2], ["a", "b"]), (docs[2:], ["c"])], k=3, backend=backend)
        assert ids == [["c", "a", "b"], ["c", "a", "b"]]
        assert scores[0].tolist() == [0.0, float("-inf"), float("-inf")]
