"""Benchmark: the language-bias measures (hbkit.language_bias) at Crossmodal-3600 scale.

3,600 images × 261,000 captions in 36 languages (about 2 per image and language), random
512-d embeddings: each image has a latent vector, its captions are that vector plus noise
and a per-language offset (L2-normalised). Times :func:`language_bias_table` for the
image→text rows (MRV, MRV_z, rank_distance_z, top-10 shares) and, separately, the
caption→caption rows for a subset of caption queries (all 261,000 would cost 72× the
image pass). Target for the image rows: at most 30 s wall and 3 GiB peak resident memory.
Measured on 2 shared CPU cores: image rows 95 s (the 512-d score products alone about 20-40 s
of it, the pessimistic ranks of metrics.relevant_ranks most of the rest), 2.6 GiB peak; over
the time target on that machine.

Usage: python bench/bench_image_text_eval.py [--images N] [--captions N] [--langs N]
[--dim D] [--caption-queries N]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.language_bias import language_bias_table
from hbkit.parallel import ImageRef

NOISE, LANG_OFFSET = 1.5, 0.6  # per-dimension scales against a latent scale of 1


def _normed(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(n_img: int, n_cap: int, n_lang: int, dim: int, seed: int = 0):
    """Benchmark and embeddings: caption j is in language j % n_lang, of image (j // n_lang) % n_img."""
    rng = np.random.default_rng(seed)
    langs = [f"l{i:02d}" for i in range(n_lang)]
    j = np.arange(n_cap)
    lang_of, img_of = j % n_lang, (j // n_lang) % n_img
    latent = rng.standard_normal((n_img, dim), dtype=np.float32)
    offset = LANG_OFFSET * rng.standard_normal((n_lang, dim), dtype=np.float32)
    img_emb = _normed(latent + NOISE * rng.standard_normal((n_img, dim), dtype=np.float32))
    cap_emb = np.empty((n_cap, dim), dtype=np.float32)
    for lo in range(0, n_cap, 20_000):  # in slices, so that setup stays below the measures' memory
        sl = slice(lo, min(n_cap, lo + 20_000))
        cap = latent[img_of[sl]] + offset[lang_of[sl]]
        cap += NOISE * rng.standard_normal(cap.shape, dtype=np.float32)
        cap_emb[sl] = _normed(cap)
    queries = [Query(f"img{i}", f"x{i}", None, "", image=ImageRef(f"img{i}.jpg")) for i in range(n_img)]
    cands = [Candidate(f"c{k}", langs[lang_of[k]], "", "", (f"x{img_of[k]}",)) for k in range(n_cap)]
    return RetrievalBenchmark("xm3600-random", queries, cands), img_emb, cap_emb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3600)
    ap.add_argument("--captions", type=int, default=261_000)
    ap.add_argument("--langs", type=int, default=36)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--caption-queries", type=int, default=3600)
    a = ap.parse_args()
    t0 = time.perf_counter()
    bench, img_emb, cap_emb = make(a.images, a.captions, a.langs, a.dim)
    t1 = time.perf_counter()
    print(f"setup {t1 - t0:.1f} s: {a.images} images x {a.captions} captions, {a.langs} languages, {a.dim}-d")
    df = language_bias_table(bench, img_emb, cap_emb, caption_setting=False)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"image→text measures: {t2 - t1:.1f} s, peak RSS so far {rss:.2f} GiB")
    pick = df[~df.metric.str.startswith("top10_share:")].set_index("metric").value
    print(pick.round(4).to_string())
    if a.caption_queries:
        sub = np.random.default_rng(1).choice(a.captions, size=min(a.caption_queries, a.captions), replace=False)
        df2 = language_bias_table(bench, img_emb, cap_emb, caption_queries=np.sort(sub))
        t3 = time.perf_counter()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"image→text + caption→caption ({len(sub)} caption queries): {t3 - t2:.1f} s, peak RSS {rss:.2f} GiB")
        cap = df2[df2.direction != "image→text"]
        cap = cap[~cap.metric.str.startswith("top10_share:")]
        print(cap.groupby("metric").value.mean().round(4).to_string())


if __name__ == "__main__":
    main()
