"""Benchmark: image–text evaluation (hbkit.image_text_eval) at Crossmodal-3600 scale.

3,600 images × 261,000 captions in 36 languages (about 2 per image and language), random 512-d
embeddings: each image has a latent vector, its captions are that vector plus noise and a
per-language offset (L2-normalised). The benchmark has the layout of
``ImageCaptionSet.to_benchmark`` (images and captions both as queries and as candidates).

1. Times :func:`evaluate_image_text_embeddings` for the monolingual rows (both directions) and
   the pooled image→text rows with the language-bias measures (``cross_lingual=False,
   caption_setting=False``). Target: at most 30 s wall and 3 GiB peak resident memory.
2. Recomputes the same numbers in the CLIP_benchmark style: the full score matrix
   ``texts_emb @ images_emb.T``, a positive-pair matrix, ``torch.topk`` recall@k (any positive in
   the top k) in both directions, and full-matrix ranks (sorted score rows) for the mAPs (sklearn's
   average precision, ties included) and the pooled R@10, rank distance and MRV; prints the
   largest absolute difference and the time ratio.
   It holds the whole matrix (about 4 GiB); ``--ref-images N`` restricts it to the first N images
   (then only the image→text rows of those images and the text→image rows of their captions are
   compared, against a run of the function on the same images).

Usage: python bench/bench_image_text_eval.py [--images N] [--captions N] [--langs N] [--dim D]
[--ref-images N] [--noise X] [--no-reference]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.image_text_eval import evaluate_image_text_embeddings
from hbkit.parallel import ImageRef

NOISE, LANG_OFFSET = 1.5, 0.6  # per-dimension scales against a latent scale of 1 (--noise changes NOISE)


def _normed(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(n_img: int, n_cap: int, n_lang: int, dim: int, seed: int = 0, noise: float = NOISE):
    """Benchmark and embeddings (n_img + n_cap, d), images first, in both queries and candidates
    order: caption j is in language j % n_lang, of image (j // n_lang) % n_img."""
    rng = np.random.default_rng(seed)
    langs = [f"l{i:02d}" for i in range(n_lang)]
    j = np.arange(n_cap)
    lang_of, img_of = j % n_lang, (j // n_lang) % n_img
    latent = rng.standard_normal((n_img, dim), dtype=np.float32)
    offset = LANG_OFFSET * rng.standard_normal((n_lang, dim), dtype=np.float32)
    emb = np.empty((n_img + n_cap, dim), dtype=np.float32)
    emb[:n_img] = _normed(latent + noise * rng.standard_normal((n_img, dim), dtype=np.float32))
    for lo in range(0, n_cap, 20_000):  # in slices, so that setup stays below the measures' memory
        sl = slice(lo, min(n_cap, lo + 20_000))
        cap = latent[img_of[sl]] + offset[lang_of[sl]]
        cap += noise * rng.standard_normal(cap.shape, dtype=np.float32)
        emb[n_img + sl.start:n_img + sl.stop] = _normed(cap)
    refs = [ImageRef(f"x{i}.jpg") for i in range(n_img)]
    queries = [Query(f"image:x{i}", f"x{i}", None, "", image=refs[i]) for i in range(n_img)]
    cands = [Candidate(f"image:x{i}", None, "", xids=(f"x{i}",), image=refs[i]) for i in range(n_img)]
    for k in range(n_cap):
        cid, lang, x = f"c{k}", langs[lang_of[k]], f"x{img_of[k]}"
        queries.append(Query(cid, x, lang, "caption"))
        cands.append(Candidate(cid, lang, "caption", xids=(x,)))
    return RetrievalBenchmark("xm3600-random", queries, cands), emb, lang_of, img_of


def reference(img: torch.Tensor, cap: torch.Tensor, lang_of: np.ndarray, img_of: np.ndarray, n_lang: int,
              ks=(1, 5, 10)) -> dict:
    """CLIP_benchmark-style full-matrix values: {(direction, setting, query_lang, candidate_lang, metric): value}."""
    out = {}
    scores = cap @ img.T  # (n_text, n_image), the whole matrix
    lang_t, img_t = torch.from_numpy(lang_of), torch.from_numpy(img_of)
    for g in range(n_lang):
        name = f"l{g:02d}"
        rows = torch.nonzero(lang_t == g).flatten()
        s = scores[rows]  # this language's texts × all images
        positive = torch.zeros_like(s, dtype=torch.bool)
        positive[torch.arange(len(rows)), img_t[rows]] = True
        for direction, sc, pos in (("text→image", s, positive), ("image→text", s.T, positive.T)):
            has = pos.any(1)  # queries without a positive are left out (CLIP_benchmark would count them as 0)
            top = torch.topk(sc, max(ks), dim=1).indices
            hits = {k: pos.gather(1, top[:, :k]).any(1)[has].double() for k in ks}
            # mAP (sklearn's average precision, ties included): per positive, the number of positives
            # scoring at least as high over the number of candidates scoring at least as high
            srt = torch.sort(sc, dim=1).values  # ascending
            pr, pc = torch.nonzero(pos, as_tuple=True)
            v = sc[pr, pc][:, None]
            rank = sc.shape[1] - torch.searchsorted(srt[pr], v).flatten()
            above = ((sc[pr] >= v) & pos[pr]).sum(1)
            n_pos = pos.sum(1)
            ap = torch.zeros(sc.shape[0], dtype=torch.float64).index_add_(0, pr, above.double() / rank.double())
            ap = (ap / n_pos.clamp(min=1))[has]
            key = (direction, "monolingual", name, "-") if direction == "text→image" else \
                (direction, "monolingual", "-", name)
            for k in ks:
                out[key + (f"hit@{k}",)] = hits[k].mean().item()
            out[key + ("hit_mean",)] = torch.stack(list(hits.values())).mean(0).mean().item()
            out[key + ("mAP",)] = ap.mean().item()
    # pooled: each image against all captions; ranks from the sorted score rows
    n_img = img.shape[0]
    members = torch.argsort(img_t, stable=True)  # caption indices grouped by image
    n_rel = torch.bincount(img_t, minlength=n_img)
    m = int(n_rel.max())
    start = torch.cumsum(n_rel, 0) - n_rel
    slot = torch.arange(m)[None, :]
    rel = torch.where(slot < n_rel[:, None], members[(start[:, None] + slot).clamp(max=len(members) - 1)], -1)
    aps, r10, dist, mrv = [], [], [], []
    for a in range(0, n_img, 256):
        block = scores[:, a:a + 256].T.contiguous()  # (b, n_text)
        r = rel[a:a + 256]
        valid = r >= 0
        vals = block.gather(1, r.clamp(min=0))
        rank = block.shape[1] - torch.searchsorted(torch.sort(block, dim=1).values, vals)  # number of scores >= v
        rank = torch.where(valid, rank, torch.iinfo(torch.int64).max)  # padding: never a language's best
        above = ((vals[:, None, :] >= vals[:, :, None]) & valid[:, None, :]).sum(2)  # positives scoring >=
        aps.append(torch.where(valid, above.double() / rank.double(), 0.0).sum(1) / valid.sum(1))
        r10.append(((rank <= 10) & valid).sum(1).double() / valid.sum(1))
        best = torch.full((len(r), n_lang), torch.iinfo(torch.int64).max)
        best.scatter_reduce_(1, torch.where(valid, lang_t[r.clamp(min=0)], 0), rank, "amin")
        best = best.double()  # every image has a caption in every language here
        dist.append(best.max(1).values - best.min(1).values)
        mrv.append(best.std(1, correction=0))
    key = ("image→text", "multilingual", "-", "all")
    for name, v in (("mAP", aps), ("R@10", r10), ("rank_distance", dist), ("MRV", mrv)):
        out[key + (name,)] = torch.cat(v).double().mean().item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3600)
    ap.add_argument("--captions", type=int, default=261_000)
    ap.add_argument("--langs", type=int, default=36)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--ref-images", type=int, default=None, help="reference on the first N images only")
    ap.add_argument("--noise", type=float, default=NOISE, help="caption/image noise scale (larger: a poorer model)")
    ap.add_argument("--no-reference", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    bench, emb, lang_of, img_of = make(a.images, a.captions, a.langs, a.dim, noise=a.noise)
    t1 = time.perf_counter()
    load = os.getloadavg()[0]
    print(f"setup {t1 - t0:.1f} s: {a.images} images x {a.captions} captions, {a.langs} languages, {a.dim}-d; "
          f"{torch.get_num_threads()} threads, load average {load:.2f}", flush=True)
    cpu0 = time.process_time()
    df = evaluate_image_text_embeddings(bench, emb, emb, cross_lingual=False, caption_setting=False,
                                        show_progress=False)
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"monolingual (both directions) + pooled image→text with the bias measures: {t2 - t1:.1f} s wall "
          f"(target ≤ 30 s; {cpu:.1f} s CPU), peak RSS {rss:.2f} GiB (target ≤ 3 GiB), {len(df)} rows; "
          f"load average now {os.getloadavg()[0]:.2f}", flush=True)
    multi = df[(df.setting == "multilingual") & ~df.metric.str.startswith("top10_share:")]
    print(multi.set_index("metric").value.round(4).to_string())
    mono = df[df.setting == "monolingual"].groupby(["direction", "metric"]).value.mean()
    print("monolingual, mean over languages:\n" + mono.round(4).to_string())
    if a.no_reference:
        return
    n_ref = a.images if a.ref_images is None else min(a.ref_images, a.images)
    img = torch.from_numpy(emb[:n_ref])
    keep = img_of < n_ref
    cap = torch.from_numpy(emb[a.images:][keep])
    mine, mine_s = df, t2 - t1
    if n_ref < a.images:  # the function on the same images, for a like-for-like comparison
        sub_q = bench.queries[:n_ref] + [q for q, k in zip(bench.queries[a.images:], keep) if k]
        sub_c = bench.candidates[:n_ref] + [c for c, k in zip(bench.candidates[a.images:], keep) if k]
        sub_e = np.concatenate([emb[:n_ref], emb[a.images:][keep]])
        ts = time.perf_counter()
        mine = evaluate_image_text_embeddings(RetrievalBenchmark(bench.name, sub_q, sub_c), sub_e, sub_e,
                                              cross_lingual=False, caption_setting=False, show_progress=False)
        mine_s = time.perf_counter() - ts
    t3 = time.perf_counter()
    ref = reference(img, cap, lang_of[keep], img_of[keep], a.langs)
    t4 = time.perf_counter()
    got = {(r.direction, r.setting, r.query_lang, r.candidate_lang, r.metric): r.value for r in mine.itertuples()}
    missing = [key for key in ref if key not in got]
    diff, worst = max((abs(got[key] - v), key) for key, v in ref.items() if key in got)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    scope = "all images" if n_ref == a.images else f"the first {n_ref} images (a slice)"
    print(f"CLIP_benchmark-style full-matrix reference on {scope}: {t4 - t3:.1f} s, {len(ref)} values compared, "
          f"max abs difference {diff:.2e} ({' '.join(worst)}), {len(missing)} missing; time ratio reference / function "
          f"{(t4 - t3) / mine_s:.1f}x; peak RSS now {rss:.2f} GiB")


if __name__ == "__main__":
    main()
