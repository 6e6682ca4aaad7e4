"""Benchmark: MIRACL-scale exact search with hbkit's streaming top-k, against faiss IndexFlatIP.

Target: 1,000,000 passages × 1,000 queries of 768-d L2-normalised embeddings, top-100, with
peak resident memory under 2 GiB for hbkit (the corpus is never held: each seeded chunk is
generated, added to :class:`hbkit.engine.search.StreamingTopK` and dropped) and hbkit's time
at most 1.25× faiss's search alone (speed ratio faiss search / hbkit >= 0.8).

Three runs, each in its own subprocess on the same seeded chunks, each reporting its own peak
RSS (``resource.getrusage``):

- faiss-cpu's exact ``IndexFlatIP``, which must hold every vector (1M × 768 float32 = 2.9 GiB):
  add and search timed separately;
- hbkit with ``backend="faiss"`` (faiss's exact k-NN per chunk, merged by hbkit);
- hbkit with ``backend="torch"``.

All use the same number of threads (``--threads``, default torch's): ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` for the subprocess, ``torch.set_num_threads`` and ``faiss.omp_set_num_threads``
inside it. The script checks that the top-100 ids agree (documents within 1e-5 of a query's
100th score may differ: float32 rounding of near-ties) and prints times, peaks and the speed ratios.
``--repeats N`` runs the three N times, interleaved, and reports medians (timings on shared cores vary).

Usage: python bench/bench_search.py [--docs N] [--queries N] [--chunk N] [--k N] [--threads N]
                                    [--repeats N] [--no-faiss]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
#: Worker names: faiss's own index, and hbkit with each backend.
WORKERS = ("faiss-index", "hbkit-faiss", "hbkit-torch")


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


def set_threads(n: int) -> dict:
    """Use ``n`` threads in torch and (when installed) faiss; the counts in effect."""
    import torch

    torch.set_num_threads(n)
    out = {"torch_threads": torch.get_num_threads()}
    try:
        import faiss
    except ImportError:
        return out
    faiss.omp_set_num_threads(n)
    out["faiss_threads"] = faiss.omp_get_max_threads()
    return out


def run_faiss_index(args) -> dict:
    """Exact inner-product search with faiss IndexFlatIP over the whole corpus."""
    import faiss

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
    return {"add_s": t_add, "search_s": t_search, "gen_s": t_gen, "scores": scores, "ids": ids,
            "version": faiss.__version__}


def run_hbkit(args, backend: str) -> dict:
    """hbkit's StreamingTopK with ``backend``: every chunk added then dropped."""
    import torch

    sys.path.insert(0, str(REPO))
    from hbkit.engine.search import StreamingTopK

    q = torch.from_numpy(make_queries(args.queries))
    searcher = StreamingTopK(q, args.k, backend=backend)
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
    return {"search_s": t_add, "gen_s": t_gen, "scores": scores.numpy(),
            "ids": np.array([[int(d) for d in row] for row in names])}


def worker(args) -> None:
    """Subprocess: run ``args.worker`` and write its figures and results to ``args.out``."""
    threads = set_threads(args.threads)
    res = run_faiss_index(args) if args.worker == "faiss-index" else run_hbkit(args, args.worker.split("-")[1])
    out = Path(args.out)
    np.save(out / f"{args.worker}_ids.npy", res.pop("ids"))
    np.save(out / f"{args.worker}_scores.npy", res.pop("scores"))
    (out / f"{args.worker}.json").write_text(json.dumps({**res, **threads, "peak_rss": peak_rss_bytes()}))


def spawn(name: str, args, tmp: str) -> dict:
    """Run worker ``name`` in a subprocess; its figures, results and wall time."""
    cmd = [sys.executable, __file__, "--worker", name, "--docs", str(args.docs), "--queries", str(args.queries),
           "--chunk", str(args.chunk), "--k", str(args.k), "--threads", str(args.threads), "--out", tmp]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    info = json.loads((Path(tmp) / f"{name}.json").read_text())
    info["wall_s"] = time.perf_counter() - t0
    info["ids"] = np.load(Path(tmp) / f"{name}_ids.npy")
    info["scores"] = np.load(Path(tmp) / f"{name}_scores.npy")
    return info


def compare(a: dict, b: dict) -> tuple[int, int, float]:
    """(queries with identical top-k id sets, queries whose differences are all near-ties, max |score diff|)."""
    same = near = 0
    for i in range(a["ids"].shape[0]):
        sa, sb = set(a["ids"][i].tolist()), set(b["ids"][i].tolist())
        if sa == sb:
            same += 1
            continue
        kth = min(a["scores"][i, -1], b["scores"][i, -1])
        s_a = dict(zip(a["ids"][i].tolist(), a["scores"][i].tolist()))
        s_b = dict(zip(b["ids"][i].tolist(), b["scores"][i].tolist()))
        if all(abs({**s_b, **s_a}[d] - kth) < TOL for d in sa ^ sb):
            near += 1
    return same, near, float(np.abs(a["scores"] - b["scores"]).max())


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def listing(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1_000)
    p.add_argument("--chunk", type=int, default=65_536, help="documents generated (and added) at a time")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="threads for torch and faiss (default: torch's)")
    p.add_argument("--repeats", type=int, default=1, help="run each measurement this many times (medians)")
    p.add_argument("--no-faiss", action="store_true", help="hbkit's torch backend only")
    p.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if args.threads < 1:
        import torch

        args.threads = torch.get_num_threads()
    names = list(WORKERS)
    if not args.no_faiss:
        try:
            import faiss  # noqa: F401
        except ImportError:
            print("faiss-cpu is not installed (pip install faiss-cpu): hbkit's torch backend only.")
            args.no_faiss = True
    if args.no_faiss:
        names = ["hbkit-torch"]

    print(f"MIRACL-scale exact search: {args.docs:,} passages × {args.queries:,} queries of {DIM}-d embeddings, "
          f"top-{args.k}; documents generated in seeded chunks of {args.chunk:,}; {args.threads} threads; "
          f"{args.repeats} run(s) of each, interleaved, each in its own process.")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for n in names:
                runs[n].append(spawn(n, args, tmp))
    last = {n: r[-1] for n, r in runs.items()}
    threads = {n: f"torch {r['torch_threads']}" + (f", faiss {r['faiss_threads']}" if "faiss_threads" in r else "")
               for n, r in last.items()}
    each = "" if args.repeats == 1 else " (median)"
    ok = True
    if "faiss-index" in runs:
        f = runs["faiss-index"]
        print(f"faiss {last['faiss-index']['version']} IndexFlatIP [{threads['faiss-index']} threads]: "
              f"add {med(f, 'add_s'):.2f} s + search {med(f, 'search_s'):.2f} s{each} "
              f"(search runs: {listing(r['search_s'] for r in f)} s; + {med(f, 'gen_s'):.1f} s generating "
              f"data), peak RSS {max(r['peak_rss'] for r in f) / GIB:.2f} GiB")
    for n in ("hbkit-faiss", "hbkit-torch"):
        if n not in runs:
            continue
        peak = max(r["peak_rss"] for r in runs[n])
        ok &= peak < 2 * GIB
        print(f"hbkit StreamingTopK backend={n.split('-')[1]!r} [{threads[n]} threads]: "
              f"{med(runs[n], 'search_s'):.2f} s{each} (runs: {listing(r['search_s'] for r in runs[n])} s; "
              f"+ {med(runs[n], 'gen_s'):.1f} s generating data), peak RSS {peak / GIB:.2f} GiB "
              f"-> {'under' if peak < 2 * GIB else 'OVER'} 2 GiB")
    pairs = [(a, b) for a, b in (("hbkit-faiss", "hbkit-torch"), ("hbkit-faiss", "faiss-index"),
                                 ("hbkit-torch", "faiss-index")) if a in last and b in last]
    for a, b in pairs:
        same, near, max_diff = compare(last[a], last[b])
        n_q = last[a]["ids"].shape[0]
        identical = int((last[a]["ids"] == last[b]["ids"]).all(axis=1).sum())
        agree = same + near == n_q
        ok &= agree
        print(f"top-{args.k} {a} vs {b}: {same}/{n_q} queries with identical sets ({identical} in identical order), "
              f"{near} differ only by near-ties (< {TOL:g}); max |score difference| {max_diff:.2e} "
              f"-> {'OK' if agree else 'MISMATCH'}")
    if "faiss-index" in runs:
        f_search = med(runs["faiss-index"], "search_s")
        f_total = f_search + med(runs["faiss-index"], "add_s")
        for n in ("hbkit-faiss", "hbkit-torch"):
            t = med(runs[n], "search_s")
            per_run = listing(fr["search_s"] / hr["search_s"] for fr, hr in zip(runs["faiss-index"], runs[n]))
            print(f"speed {n}: faiss search / hbkit time = {f_search / t:.2f}{each} (runs: {per_run}; target >= 0.8 "
                  f"-> {'met' if f_search / t >= 0.8 else 'NOT met'}); faiss add + search / hbkit = {f_total / t:.2f}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
