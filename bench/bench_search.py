"""Benchmark: MIRACL-scale exact search with hbkit's streaming top-k, against faiss IndexFlatIP.

Target: 1,000,000 passages × 1,000 queries of 768-d L2-normalised embeddings, top-100, with
peak resident memory under 2 GiB for hbkit (the corpus is never held: each seeded chunk is
generated, added to :class:`hbkit.engine.search.StreamingTopK` and dropped). faiss-cpu's exact
``IndexFlatIP`` must hold every vector (1M × 768 float32 = 2.9 GiB), so it runs in a separate
subprocess on the same seeded chunks, and each process reports its own peak RSS
(``resource.getrusage``). Both use the same number of threads. The script checks that the
top-100 ids agree (documents within 1e-5 of a query's 100th score may differ: float32
rounding of near-ties) and prints times, peaks and the speed ratio.

Usage: python bench/bench_search.py [--docs N] [--queries N] [--chunk N] [--k N] [--no-faiss]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM = 768
SEED = 0
TOL = 1e-5
GIB = 2**30


def make_chunk(i: int, n: int) -> np.ndarray:
    """Chunk ``i`` of the synthetic corpus: n seeded Gaussian vectors, L2-normalised, float32."""
    x = np.random.default_rng([SEED, i]).standard_normal((n, DIM), dtype=np.float32)
    x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]  # in place: no second chunk-sized array
    return x


def make_queries(n: int) -> np.ndarray:
    return make_chunk(10**9, n)


def chunk_sizes(n_docs: int, chunk: int) -> list[int]:
    return [min(chunk, n_docs - s) for s in range(0, n_docs, chunk)]


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_faiss(args) -> None:
    """Subprocess: exact inner-product search with faiss IndexFlatIP; writes results to --out."""
    import faiss

    faiss.omp_set_num_threads(args.threads)
    t_gen = t_add = 0.0
    index = faiss.IndexFlatIP(DIM)
    for i, n in enumerate(chunk_sizes(args.docs, args.chunk)):
        t0 = time.perf_counter()
        x = make_chunk(i, n)
        t1 = time.perf_counter()
        index.add(x)
        t_add += time.perf_counter() - t1
        t_gen += t1 - t0
        del x
    q = make_queries(args.queries)
    t0 = time.perf_counter()
    scores, ids = index.search(q, args.k)
    t_search = time.perf_counter() - t0
    out = Path(args.out)
    np.save(out / "faiss_ids.npy", ids)
    np.save(out / "faiss_scores.npy", scores)
    (out / "faiss.json").write_text(json.dumps({"add_s": t_add, "search_s": t_search, "gen_s": t_gen,
                                                "peak_rss": peak_rss_bytes(), "version": faiss.__version__}))


def run_hbkit(args) -> dict:
    import torch

    sys.path.insert(0, str(REPO))
    from hbkit.engine.search import StreamingTopK

    q = torch.from_numpy(make_queries(args.queries))
    searcher = StreamingTopK(q, args.k)
    t_gen = t_add = 0.0
    start = 0
    for i, n in enumerate(chunk_sizes(args.docs, args.chunk)):
        t0 = time.perf_counter()
        x = torch.from_numpy(make_chunk(i, n))
        ids = [str(j) for j in range(start, start + n)]
        t1 = time.perf_counter()
        searcher.add(x, ids)
        t_add += time.perf_counter() - t1
        t_gen += t1 - t0
        start += n
        del x, ids
    t0 = time.perf_counter()
    scores, names = searcher.result()
    t_add += time.perf_counter() - t0
    return {"search_s": t_add, "gen_s": t_gen, "peak_rss": peak_rss_bytes(), "scores": scores.numpy(),
            "ids": np.array([[int(d) for d in row] for row in names]), "threads": torch.get_num_threads()}


def compare(ours: dict, f_ids: np.ndarray, f_scores: np.ndarray) -> tuple[int, int, float]:
    """(queries with identical top-k id sets, queries whose differences are all near-ties, max |score diff|)."""
    same = near = 0
    for i in range(ours["ids"].shape[0]):
        a, b = set(ours["ids"][i].tolist()), set(f_ids[i].tolist())
        if a == b:
            same += 1
            continue
        kth = min(ours["scores"][i, -1], f_scores[i, -1])
        s_a = dict(zip(ours["ids"][i].tolist(), ours["scores"][i].tolist()))
        s_b = dict(zip(f_ids[i].tolist(), f_scores[i].tolist()))
        if all(abs({**s_b, **s_a}[d] - kth) < TOL for d in a ^ b):
            near += 1
    return same, near, float(np.abs(ours["scores"] - f_scores).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1_000)
    p.add_argument("--chunk", type=int, default=65_536, help="documents generated (and added) at a time")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--no-faiss", action="store_true")
    p.add_argument("--faiss-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.faiss_worker:
        run_faiss(args)
        return

    print(f"MIRACL-scale exact search: {args.docs:,} passages × {args.queries:,} queries of {DIM}-d embeddings, "
          f"top-{args.k}; documents generated in seeded chunks of {args.chunk:,}.")
    t0 = time.perf_counter()
    ours = run_hbkit(args)
    wall = time.perf_counter() - t0
    ok_mem = ours["peak_rss"] < 2 * GIB
    print(f"hbkit StreamingTopK ({ours['threads']} threads): search {ours['search_s']:.1f} s "
          f"(+ {ours['gen_s']:.1f} s generating data; wall {wall:.1f} s), peak RSS {ours['peak_rss'] / GIB:.2f} GiB "
          f"-> {'under' if ok_mem else 'OVER'} 2 GiB")
    if args.no_faiss:
        return
    try:
        import faiss  # noqa: F401
    except ImportError:
        print("faiss-cpu is not installed (pip install faiss-cpu): no comparison.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--faiss-worker", "--docs", str(args.docs), "--queries", str(args.queries),
               "--chunk", str(args.chunk), "--k", str(args.k), "--threads", str(ours["threads"]), "--out", tmp]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(ours["threads"])})
        f_wall = time.perf_counter() - t0
        info = json.loads((Path(tmp) / "faiss.json").read_text())
        f_ids = np.load(Path(tmp) / "faiss_ids.npy")
        f_scores = np.load(Path(tmp) / "faiss_scores.npy")
    f_total = info["add_s"] + info["search_s"]
    print(f"faiss {info['version']} IndexFlatIP ({ours['threads']} threads, separate process): add {info['add_s']:.1f} s "
          f"+ search {info['search_s']:.1f} s = {f_total:.1f} s (+ {info['gen_s']:.1f} s generating data; "
          f"wall {f_wall:.1f} s), peak RSS {info['peak_rss'] / GIB:.2f} GiB")
    same, near, max_diff = compare(ours, f_ids, f_scores)
    n_q = f_ids.shape[0]
    agree = same + near == n_q
    print(f"top-{args.k} agreement: {same}/{n_q} queries identical, {near} differ only by near-ties (< {TOL:g}); "
          f"max |score difference| {max_diff:.2e} -> {'OK' if agree else 'MISMATCH'}")
    print(f"speed: hbkit / faiss time = {ours['search_s'] / f_total:.2f} "
          f"(faiss search alone: {ours['search_s'] / info['search_s']:.2f}); "
          f"memory: hbkit {ours['peak_rss'] / GIB:.2f} GiB vs faiss {info['peak_rss'] / GIB:.2f} GiB")
    if not (ok_mem and agree):
        sys.exit(1)


if __name__ == "__main__":
    main()
