"""Benchmark: the cross-lingual caption→caption setting of hbkit.image_text_eval at XTD10 scale.

1,000 images × 11 languages × 1 caption, 512-d random embeddings (each image a latent vector; its
captions that vector plus noise and a per-language offset), in the layout of
``ImageCaptionSet.to_benchmark``. Times :func:`evaluate_image_text_embeddings` without and with
the cross-lingual rows (all 110 ordered language pairs; target ≤ 10 s for them), then with every
setting, and checks the cross-lingual rows against :func:`hbkit.evaluation.evaluate_embeddings`
on the captions (largest absolute difference).

Usage: python bench/bench_xtd10_crosslingual.py [--images N] [--langs N] [--dim D]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets.images import ImageCaptionSet
from hbkit.evaluation import evaluate_embeddings
from hbkit.image_text_eval import evaluate_image_text_embeddings
from hbkit.parallel import ImageRef

LANGS = ["de", "en", "es", "fr", "it", "ja", "ko", "pl", "ru", "tr", "zh"]


def make(n_img: int, n_lang: int, dim: int, seed: int = 0):
    """Benchmark, query and candidate embeddings (a query shares its candidate twin's embedding)."""
    rng = np.random.default_rng(seed)
    langs = LANGS[:n_lang]
    ids = tuple(f"{i:012d}" for i in range(n_img))
    caps = {lang: tuple((f"{lang} {i}",) for i in range(n_img)) for lang in langs}
    bench = ImageCaptionSet("xtd10-random", ids, tuple(ImageRef(f"{i}.jpg") for i in ids), caps).to_benchmark()
    latent = rng.standard_normal((n_img, dim), dtype=np.float32)
    offset = 0.6 * rng.standard_normal((n_lang, dim), dtype=np.float32)
    lang_index = {lang: j for j, lang in enumerate(langs)}
    index = {x: i for i, x in enumerate(ids)}
    c = np.empty((len(bench.candidates), dim), dtype=np.float32)
    for j, cd in enumerate(bench.candidates):
        v = latent[index[cd.xids[0]]] + 4.0 * rng.standard_normal(dim, dtype=np.float32)
        if cd.lang is not None:
            v = v + offset[lang_index[cd.lang]]
        c[j] = v / np.linalg.norm(v)
    pos = {cd.cid: j for j, cd in enumerate(bench.candidates)}
    q = c[[pos[qq.qid] for qq in bench.queries]]
    return bench, q, c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--langs", type=int, default=11)
    ap.add_argument("--dim", type=int, default=512)
    a = ap.parse_args()
    bench, q, c = make(a.images, a.langs, a.dim)
    print(f"{a.images} images x {a.langs} languages x 1 caption, {a.dim}-d; load average {os.getloadavg()[0]:.2f}")
    kw = {"caption_setting": False, "show_progress": False}
    t0 = time.perf_counter()
    evaluate_image_text_embeddings(bench, q, c, cross_lingual=False, **kw)
    t1 = time.perf_counter()
    df = evaluate_image_text_embeddings(bench, q, c, cross_lingual=True, **kw)
    t2 = time.perf_counter()
    xl = df[df.setting == "cross-lingual"]
    pairs = xl[["query_lang", "candidate_lang"]].drop_duplicates()
    print(f"monolingual + pooled image rows {t1 - t0:.2f} s; with the cross-lingual rows {t2 - t1:.2f} s: "
          f"{len(pairs)} language pairs in {(t2 - t1) - (t1 - t0):.2f} s (target ≤ 10 s); "
          f"mean mAP {xl[xl.metric == 'mAP'].value.mean():.4f}, R@1 {xl[xl.metric == 'R@1'].value.mean():.4f}")
    full = evaluate_image_text_embeddings(bench, q, c, show_progress=False)
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"every setting (also caption→caption, {a.images * a.langs} caption queries): {t3 - t2:.2f} s, "
          f"{len(full)} rows, peak RSS {rss:.2f} GiB")
    text_q = [i for i, x in enumerate(bench.queries) if x.modality == "text"]
    text_c = [j for j, x in enumerate(bench.candidates) if x.modality == "text"]
    captions = RetrievalBenchmark(bench.name, [bench.queries[i] for i in text_q], [bench.candidates[j] for j in text_c])
    t4 = time.perf_counter()
    ref = evaluate_embeddings(captions, q[text_q], c[text_c], settings=("cross-lingual",), ks_mono=(1,),
                              show_progress=False)
    t5 = time.perf_counter()
    key = ["query_lang", "candidate_lang", "metric"]
    m = xl.merge(ref, on=key, suffixes=("", "_ref"))
    print(f"evaluate_embeddings' cross-lingual rows: {t5 - t4:.2f} s; {len(m)} of {len(xl)} values compared, "
          f"max abs difference {(m.value - m.value_ref).abs().max():.2e}")


if __name__ == "__main__":
    main()
