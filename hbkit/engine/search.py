"""Exact (brute-force) top-k inner-product search over a corpus streamed in chunks.

A MIRACL corpus has millions of passages; its embeddings need not fit in memory. The
searcher keeps only the running top-k per query: each chunk of document embeddings is
reduced to its exact top-k per query and merged into the running top-k; the chunk can
then be discarded. Two backends compute a chunk's top-k (``backend=``):

- ``"faiss"``: faiss's exact k-NN (``faiss.knn``, the kernel behind ``IndexFlatIP.search``:
  BLAS score blocks of 4096 queries × 1024 documents with fused top-k selection), without
  copying the chunk into an index. Needs ``faiss-cpu``; it uses faiss's OpenMP threads
  (``faiss.omp_set_num_threads``, default ``OMP_NUM_THREADS``).
- ``"torch"``: ``q @ chunk.T`` in score blocks of at most ``block_bytes`` (default 256 MiB):
  sub-blocks of ``doc_block`` documents (default 65,536) against as many queries as fit,
  each reduced with ``torch.topk``; torch's threads.
- ``"auto"`` (default): faiss when it is installed, else torch.

Memory is bounded by one score block and the running results, whatever the corpus size;
the running top-k is ``n_queries × k`` scores and positions, plus the ids of the documents
currently in it (document ids of the rest of the stream are not kept).

**Ties** are broken deterministically and identically by both backends: among equal
scores, the document added earlier (smaller position in the stream) ranks first — inside
the top-k and at its boundary. ``torch.topk`` and faiss alone pick an arbitrary subset of
scores tied at the k-th value, so one extra candidate per query (k + 1) tells where a tie
crosses the boundary; those queries' chunk top-k is then recomputed by position (with
torch, for the faiss backend). Candidates are merged in (score descending, position
ascending) order. (Metrics in :mod:`hbkit.trec_metrics` re-rank the returned run by
trec_eval's own rule; this rule only decides which tied documents make the cut.) Scores
are float32 dot products; with L2-normalised embeddings they are cosine similarities. The
backends' BLAS kernels may round a sum differently (≈1e-7), so documents within that of
the k-th score may differ between backends.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Iterable, Sequence

import numpy as np
import torch

from hbkit.errors import ConfigError, DataError

#: Default bound (bytes) of one float32 query × document score block.
BLOCK_BYTES = 256 * 2**20
#: Default number of documents scored per block.
DOC_BLOCK = 65_536
#: Accepted values of ``backend``.
BACKENDS = ("auto", "faiss", "torch")

__all__ = ["BACKENDS", "BLOCK_BYTES", "DOC_BLOCK", "StreamingTopK", "resolve_backend", "topk_search"]


def _import_faiss() -> ModuleType | None:
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


def resolve_backend(backend: str = "auto") -> str:
    """The backend ``"faiss"`` or ``"torch"`` that ``backend`` (one of :data:`BACKENDS`) selects here."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    if backend == "torch":
        return "torch"
    if _import_faiss() is None:
        if backend == "faiss":
            raise ConfigError('backend="faiss" needs faiss, which is not installed: pip install faiss-cpu '
                              '(or pass backend="torch" or "auto").')
        return "torch"
    return "faiss"


def _as_matrix(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch tensor or numpy array (n, d), got {type(x).__name__}.")
    if x.ndim != 2:
        raise DataError(f"{name} must be 2-d (n, d), got shape {tuple(x.shape)}.")
    if not (x.is_floating_point()):
        raise DataError(f"{name} must hold floats, got dtype {x.dtype}. Pass embeddings, e.g. from encoder.encode().")
    x = x.detach().to("cpu", torch.float32).contiguous()
    # A NaN or infinity makes the sum non-finite; the element-wise check (slower) runs only then.
    if x.numel() and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise DataError(f"{name} holds NaN or infinite values. Check the encoder output (NaN weights or inputs?).")
    return x


def _order(vals: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score descending, then position ascending."""
    pos, perm = torch.sort(pos, dim=1)
    vals = torch.gather(vals, 1, perm)
    vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(pos, 1, perm)


def _block_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row; among scores tied at the k-th value, the smallest column indices."""
    n = scores.shape[1]
    if k >= n:
        idx = torch.arange(n).expand(scores.shape[0], n)
        return scores.clone(), idx.clone()
    # One extra value tells whether a tie crosses the boundary (then topk chose arbitrarily).
    vals, idx = torch.topk(scores, k + 1, dim=1, largest=True, sorted=True)
    ambiguous = torch.nonzero(vals[:, k] == vals[:, k - 1]).flatten().tolist()
    vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    for r in ambiguous:
        t = vals[r, k - 1]
        above = vals[r] > t
        n_tied_slots = k - int(above.sum())
        tied = torch.nonzero(scores[r] == t).flatten()[:n_tied_slots]  # nonzero is in ascending order
        idx[r] = torch.cat([idx[r][above], tied])
        vals[r] = torch.cat([vals[r][above], t.expand(n_tied_slots)])
    return vals, idx


class StreamingTopK:
    """Running exact top-k of inner products between fixed queries and streamed documents.

    Args:
        queries: (n_q, d) float embeddings (tensor or array; kept as float32 on CPU).
        k: results per query.
        block_bytes: bound of one float32 score block (queries × documents), torch backend.
        doc_block: documents scored per block, torch backend.
        backend: ``"auto"`` (faiss if installed, else torch), ``"faiss"`` or ``"torch"``; the
            resolved one is :attr:`backend`. Both give the same top-k, ties included.

    ``add(doc_emb, doc_ids)`` consumes a chunk; ``result()`` gives the top-k so far.
    """

    def __init__(self, queries, k: int, *, block_bytes: int = BLOCK_BYTES, doc_block: int = DOC_BLOCK,
                 backend: str = "auto") -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}.")
        for name, v in (("block_bytes", block_bytes), ("doc_block", doc_block)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}.")
        self.backend = resolve_backend(backend)
        self._faiss = _import_faiss() if self.backend == "faiss" else None
        self.queries = _as_matrix(queries, "queries")
        if self.queries.shape[0] == 0:
            raise DataError("queries is empty: pass at least one query embedding.")
        self.k = int(k)
        self.doc_block = int(doc_block)
        self.query_block = max(1, int(block_bytes) // (4 * self.doc_block))
        n_q = self.queries.shape[0]
        self._vals = torch.empty(n_q, 0)
        self._pos = torch.empty(n_q, 0, dtype=torch.int64)
        self._names: dict[int, str] = {}
        self.n_docs = 0

    @property
    def dim(self) -> int:
        return int(self.queries.shape[1])

    def add(self, doc_emb, doc_ids: Sequence[str]) -> None:
        """Score a chunk of documents (n, d) with ids ``doc_ids`` (n strings) and merge its top-k."""
        docs = _as_matrix(doc_emb, "doc_emb")
        doc_ids = list(doc_ids)
        if docs.shape[0] != len(doc_ids):
            raise DataError(f"doc_emb has {docs.shape[0]} rows but {len(doc_ids)} doc_ids were given: "
                            "pass one id per embedding row.")
        if docs.shape[0] and docs.shape[1] != self.dim:
            raise DataError(f"doc_emb has dimension {docs.shape[1]} but the queries have {self.dim}: "
                            "encode queries and documents with the same model.")
        bad = next((d for d in doc_ids if not isinstance(d, str)), None)
        if bad is not None:
            raise DataError(f"Document id {bad!r} is a {type(bad).__name__}, not a string. "
                            "Pass string ids (MIRACL ids such as '81674#0' must never be cast to int).")
        n, base = docs.shape[0], self.n_docs
        if n == 0:
            return
        if self._faiss is not None:
            self._add_faiss(docs, base)
        else:
            self._add_torch(docs, base)
        fresh = torch.unique(self._pos[self._pos >= base]).tolist()
        for p in fresh:
            self._names[p] = doc_ids[p - base]
        self.n_docs += n
        if len(self._names) > 2 * self._pos.numel():  # forget ids that left the top-k
            keep = set(torch.unique(self._pos).tolist())
            self._names = {p: d for p, d in self._names.items() if p in keep}

    def _add_torch(self, docs: torch.Tensor, base: int) -> None:
        n, n_q = docs.shape[0], self.queries.shape[0]
        buf = torch.empty(min(self.query_block, n_q), min(self.doc_block, n))
        for s in range(0, n, self.doc_block):
            block = docs[s:s + self.doc_block]
            kk = min(self.k, block.shape[0])
            for a in range(0, n_q, self.query_block):
                q = self.queries[a:a + self.query_block]
                scores = torch.mm(q, block.T, out=buf[:q.shape[0], :block.shape[0]])
                vals, idx = _block_topk(scores, kk)
                vals = torch.cat([self._vals[a:a + q.shape[0]], vals], dim=1)
                pos = torch.cat([self._pos[a:a + q.shape[0]], idx + (base + s)], dim=1)
                vals, pos = _order(vals, pos)
                if a == 0:  # widen the running arrays on the first query block of a document block
                    width = min(self.k, vals.shape[1])
                    new_vals = torch.empty(n_q, width)
                    new_pos = torch.empty(n_q, width, dtype=torch.int64)
                new_vals[a:a + q.shape[0]] = vals[:, :width]
                new_pos[a:a + q.shape[0]] = pos[:, :width]
            self._vals, self._pos = new_vals, new_pos

    def _add_faiss(self, docs: torch.Tensor, base: int) -> None:
        n = docs.shape[0]
        kk = min(self.k, n)
        extra = int(kk < n)  # a (k+1)-th candidate shows whether a tie crosses the boundary
        d, i = self._faiss.knn(self.queries.numpy(), docs.numpy(), kk + extra,
                               metric=self._faiss.METRIC_INNER_PRODUCT)
        vals, idx = torch.from_numpy(d), torch.from_numpy(i)
        redo = (idx[:, :kk] < 0).any(dim=1)  # -1: faiss found no score above -FLT_MAX (overflow to -inf)
        if extra:
            redo |= vals[:, kk] == vals[:, kk - 1]
        vals, idx = vals[:, :kk].contiguous(), idx[:, :kk].contiguous()
        rows = torch.nonzero(redo).flatten()
        step = max(1, self.query_block * self.doc_block // n)  # rows per block_bytes score block
        for a in range(0, rows.numel(), step):  # ambiguous boundary: these queries' chunk top-k by torch
            r = rows[a:a + step]
            vals[r], idx[r] = _block_topk(torch.mm(self.queries[r], docs.T), kk)
        self._merge(vals, idx + base)

    def _merge(self, vals: torch.Tensor, pos: torch.Tensor) -> None:
        """Merge a chunk's candidates (n_q, c) into the running top-k, in query blocks."""
        n_q = self.queries.shape[0]
        width = min(self.k, self._vals.shape[1] + vals.shape[1])
        new_vals = torch.empty(n_q, width)
        new_pos = torch.empty(n_q, width, dtype=torch.int64)
        step = max(1, self.query_block)
        for a in range(0, n_q, step):
            v, p = _order(torch.cat([self._vals[a:a + step], vals[a:a + step]], dim=1),
                          torch.cat([self._pos[a:a + step], pos[a:a + step]], dim=1))
            new_vals[a:a + step], new_pos[a:a + step] = v[:, :width], p[:, :width]
        self._vals, self._pos = new_vals, new_pos

    def result(self) -> tuple[torch.Tensor, list[list[str]]]:
        """``(scores, ids)``: scores (n_q, min(k, n_docs)) best first, ids the matching document ids."""
        names = self._names
        return self._vals.clone(), [[names[p] for p in row] for row in self._pos.tolist()]

    def positions(self) -> torch.Tensor:
        """Stream positions (0-based, in the order documents were added) of the top-k, (n_q, min(k, n_docs))."""
        return self._pos.clone()

    def to_run(self, query_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The top-k as a trec run ``{qid: {docid: score}}`` (``query_ids`` in query order)."""
        query_ids = list(query_ids)
        if len(query_ids) != self.queries.shape[0]:
            raise DataError(f"{len(query_ids)} query ids for {self.queries.shape[0]} queries: pass one id per query.")
        if len(set(query_ids)) != len(query_ids):
            raise DataError("query_ids holds duplicates: each query needs a unique id.")
        scores, ids = self.result()
        run: dict[str, dict[str, float]] = {}
        for qid, row_s, row_d in zip(query_ids, scores.tolist(), ids):
            docs: dict[str, float] = {}
            for d, s in zip(row_d, row_s):
                docs.setdefault(d, s)  # a duplicated id keeps its best score
            run[qid] = docs
        return run


def topk_search(queries, doc_chunks: Iterable[tuple[object, Sequence[str]]], k: int,
                **kw) -> tuple[torch.Tensor, list[list[str]]]:
    """Exact top-k over ``doc_chunks``, an iterable of ``(doc_emb (n, d), doc_ids)`` pairs.

    Returns ``(scores (n_q, k'), ids)`` with k' = min(k, total documents); see :class:`StreamingTopK`.
    """
    searcher = StreamingTopK(queries, k, **kw)
    for item in doc_chunks:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"doc_chunks must yield (doc_emb, doc_ids) pairs, got a {type(item).__name__}.")
        searcher.add(*item)
    return searcher.result()
