"""hbkit.image_text_eval: every §2.2 setting from one pass, equal to the definitions it replaces
(evaluate_embeddings, language_bias_table), to CLIP_benchmark's formula and to hand-computed values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hbkit import block_scan
from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.datasets.images import ImageCaptionSet
from hbkit.errors import ConfigError, DataError
from hbkit.evaluation import evaluate_embeddings
from hbkit.image_text_eval import evaluate_image_text, evaluate_image_text_embeddings
from hbkit.language_bias import language_bias_table
from hbkit.parallel import ImageRef

LANGS = ("de", "en", "ru")
KEY = ["direction", "setting", "query_lang", "candidate_lang", "metric"]


def _case(n_img: int = 14, per_lang=(2, 1, 2), dim: int = 16, seed: int = 0, noise: float = 1.2):
    """A to_benchmark layout with continuous random embeddings (no ties); a query shares its candidate's."""
    rng = np.random.default_rng(seed)
    ids = tuple(f"img{i}" for i in range(n_img))
    caps = {lang: tuple(tuple(f"{lang} caption {j} of {i}" for j in range(k)) for i in range(n_img))
            for lang, k in zip(LANGS, per_lang)}
    bench = ImageCaptionSet("toy", ids, tuple(ImageRef(f"{i}.png") for i in ids), caps).to_benchmark()
    latent = rng.standard_normal((n_img, dim))
    xid = {x: i for i, x in enumerate(ids)}
    c = np.stack([latent[xid[cd.xids[0]]] + noise * rng.standard_normal(dim) for cd in bench.candidates])
    c = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
    pos = {cd.cid: j for j, cd in enumerate(bench.candidates)}
    return bench, c[[pos[qq.qid] for qq in bench.queries]], c


def _values(df: pd.DataFrame) -> pd.Series:
    return df.set_index(KEY).value.sort_index()


# --------------------------------------------------------------------------- an independent full-matrix reference
def _reference(bench, c, ks=(1, 5, 10)) -> dict:
    """CLIP_benchmark's formula written out: scores = texts @ images.T, a positive-pair matrix,
    recall@k = any positive in torch.topk; mAP and the pooled measures from full score rows."""
    img = [j for j, cd in enumerate(bench.candidates) if cd.modality == "image"]
    cap = [j for j, cd in enumerate(bench.candidates) if cd.modality == "text"]
    img_of = {bench.candidates[j].xids[0]: n for n, j in enumerate(img)}
    owner = torch.tensor([img_of[bench.candidates[j].xids[0]] for j in cap])
    langs = np.array([bench.candidates[j].lang for j in cap])
    scores = torch.as_tensor(c[cap]) @ torch.as_tensor(c[img]).T  # (n_text, n_image)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(cap)), owner] = True
    out = {}

    def ap(row: torch.Tensor, pos: torch.Tensor) -> float:
        rank = (row[None, :] >= row[pos][:, None]).sum(1).sort().values  # no ties: 1-based ranks
        return (torch.arange(1, len(rank) + 1).double() / rank.double()).mean().item()

    for lang in LANGS:
        sel = torch.from_numpy(np.flatnonzero(langs == lang))
        for direction, sc, pos in (("text→image", scores[sel], positive[sel]),
                                   ("image→text", scores[sel].T, positive[sel].T)):
            key = (direction, "monolingual") + ((lang, "-") if direction == "text→image" else ("-", lang))
            top = torch.topk(sc, max(ks), dim=1).indices
            hits = {k: pos.gather(1, top[:, :k]).any(1).double() for k in ks}
            for k in ks:
                out[key + (f"hit@{k}",)] = hits[k].mean().item()
            out[key + ("hit_mean",)] = torch.stack(list(hits.values())).mean(0).mean().item()
            out[key + ("mAP",)] = np.mean([ap(sc[i], pos[i]) for i in range(len(sc))])
    pooled = scores.T  # (n_image, n_text)
    aps, r10, dist, mrv = [], [], [], []
    for i in range(len(img)):
        rel = torch.nonzero(positive[:, i]).flatten()
        aps.append(ap(pooled[i], rel))
        rank = (pooled[i][None, :] >= pooled[i, rel][:, None]).sum(1)
        r10.append((rank <= 10).double().mean().item())
        best = np.array([rank[torch.from_numpy(langs[rel.numpy()] == lang)].min().item() for lang in LANGS])
        dist.append(best.max() - best.min())
        mrv.append(best.std())
    key = ("image→text", "multilingual", "-", "all")
    out.update({key + ("mAP",): np.mean(aps), key + ("R@10",): np.mean(r10), key + ("rank_distance",): np.mean(dist),
                key + ("MRV",): np.mean(mrv)})
    return out


def test_equals_an_independent_clip_benchmark_style_reference():
    for seed in (0, 1):
        bench, q, c = _case(seed=seed, n_img=12)
        got = _values(evaluate_image_text_embeddings(bench, q, c, cross_lingual=False, caption_setting=False,
                                                     show_progress=False))
        ref = _reference(bench, c)
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, abs=1e-9), key
        mono = got.xs("monolingual", level="setting")
        assert 0 < mono.xs("hit@1", level="metric").mean() < 1  # neither solved nor hopeless


# --------------------------------------------------------------------------- equality with the definitions
@pytest.mark.parametrize("fraction", [-1.0, 2.0])  # ranks by bucketing / from the extracted cells
@pytest.mark.parametrize("noise", [1.2, 3.0])  # a useful model / relevant items all over the ranking
def test_rows_equal_evaluate_embeddings_and_language_bias_table(monkeypatch, fraction, noise):
    monkeypatch.setattr(block_scan, "SPARSE_FRACTION", fraction)
    bench, q, c = _case(seed=3, noise=noise)
    df = evaluate_image_text_embeddings(bench, q, c, show_progress=False)
    full = evaluate_embeddings(bench, q, c, show_progress=False, ks_mono=(1,), ks_multi=(10,), hit_ks=(1, 5, 10))
    for direction, setting, metrics in [("text→image", "monolingual", ["hit@1", "hit@5", "hit@10", "mAP"]),
                                        ("image→text", "monolingual", ["hit@1", "hit@5", "hit@10", "mAP"]),
                                        ("image→text", "multilingual", ["mAP", "R@10", "rank_distance"]),
                                        ("text→text", "cross-lingual", ["mAP", "R@1"])]:
        a, b = (d[(d.direction == direction) & (d.setting == setting) & d.metric.isin(metrics)].set_index(KEY)
                for d in (df, full))
        assert len(a) and a.index.sort_values().equals(b.index.sort_values()), (direction, setting)
        np.testing.assert_allclose(a.value.sort_index(), b.value.sort_index(), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(a.n_queries.sort_index(), b.n_queries.sort_index())
    bias = language_bias_table(bench, q, c)
    mine = df.merge(bias[KEY], on=KEY)
    assert len(mine) == len(bias)
    pd.testing.assert_frame_equal(mine.sort_values(KEY).reset_index(drop=True)[bias.columns],
                                  bias.sort_values(KEY).reset_index(drop=True), check_dtype=False, rtol=1e-12)
    # the caption rows replace the evaluator's self-relevant text→text monolingual / multilingual rows
    assert not ((df.direction == "text→text") & (df.setting != "cross-lingual")).any()
    assert set(df[df.direction == "text→text"].metric) == {"mAP", "R@1"}
    # hit_mean: per query mean of hit@1/5/10, then averaged
    for direction in ("text→image", "image→text"):
        part = df[(df.direction == direction) & (df.setting == "monolingual")]
        for _, g in part.groupby(["query_lang", "candidate_lang"]):
            v = g.set_index("metric").value
            assert v["hit_mean"] == pytest.approx((v["hit@1"] + v["hit@5"] + v["hit@10"]) / 3, abs=1e-12)


def test_caption_query_subset_and_ddof_k_options():
    bench, q, c = _case(seed=4)
    subset = [j for j, cd in enumerate(bench.candidates) if cd.modality == "text"][::3]
    df = evaluate_image_text_embeddings(bench, q, c, caption_queries=subset, k=3, ddof=1, cross_lingual=False,
                                        show_progress=False)
    bias = language_bias_table(bench, q, c, caption_queries=subset, k=3, ddof=1)
    mine = df.merge(bias[KEY], on=KEY)
    assert len(mine) == len(bias) and "top3_share_max_minus_min" in set(bias.metric)
    np.testing.assert_allclose(_values(mine), _values(bias), rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="caption_queries must index caption"):
        evaluate_image_text_embeddings(bench, q, c, caption_queries=[0], show_progress=False)


def test_top_k_shares_when_an_image_has_fewer_relevant_captions_than_k():
    # 2 captions per image, k = 3: the top 3 reach below the relevant captions (a sampled lower bound)
    bench, q, c = _case(n_img=800, per_lang=(1, 1), seed=8)
    df = evaluate_image_text_embeddings(bench, q, c, k=3, cross_lingual=False, caption_setting=False,
                                        show_progress=False)
    bias = language_bias_table(bench, q, c, k=3, caption_setting=False)
    mine = df.merge(bias[KEY], on=KEY)
    assert len(mine) == len(bias) and "top3_share:de" in set(bias.metric)
    np.testing.assert_allclose(_values(mine), _values(bias), rtol=0, atol=1e-12)


def test_chunk_size_does_not_change_the_table():
    bench, q, c = _case(seed=5, noise=2.0)
    base = evaluate_image_text_embeddings(bench, q, c, show_progress=False)
    for chunk in (1, 5):
        pd.testing.assert_frame_equal(base, evaluate_image_text_embeddings(bench, q, c, chunk_size=chunk,
                                                                           show_progress=False), rtol=1e-12)


def test_text_to_image_without_shared_embeddings_takes_a_second_pass():
    bench, q, c = _case(seed=6)
    q = q + np.float32(1e-3) * np.random.default_rng(0).standard_normal(q.shape).astype(np.float32)
    df = evaluate_image_text_embeddings(bench, q, c, cross_lingual=False, caption_setting=False, show_progress=False)
    full = evaluate_embeddings(bench, q, c, settings=("monolingual", "multilingual"), show_progress=False)
    full = full[(full.direction != "text→text")
                & ((full.setting == "monolingual") | full.metric.isin(["mAP", "R@10", "rank_distance"]))]
    b = _values(full)
    a = _values(df).reindex(b.index)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- hand-made values
# 3 images; captions e0 e0b e1 e2 (en), d0 d1 d2 (de); images embed as the basis of R^3 and a caption
# as its column of S, so every image–caption score is an entry of S (ties included)
S = np.array([[.9, .2, .5, .1, .4, .6, .0],
              [.3, .1, .8, .2, .85, .5, .6],
              [.1, .3, .8, .7, .2, .3, .9]], dtype=np.float32)
CAPS = [("e0", "en", 0), ("e0b", "en", 0), ("e1", "en", 1), ("e2", "en", 2), ("d0", "de", 0), ("d1", "de", 1),
        ("d2", "de", 2)]


def _hand():
    ref = [ImageRef(f"{i}.jpg") for i in range(3)]
    queries = [Query(f"image:{i}", f"x{i}", None, "", image=ref[i]) for i in range(3)]
    cands = [Candidate(f"image:{i}", None, "", xids=(f"x{i}",), image=ref[i]) for i in range(3)]
    queries += [Query(cid, f"x{i}", lang, cid) for cid, lang, i in CAPS]
    cands += [Candidate(cid, lang, cid, xids=(f"x{i}",)) for cid, lang, i in CAPS]
    emb = np.concatenate([np.eye(3, dtype=np.float32), S.T])
    return RetrievalBenchmark("hand", queries, cands), emb


def test_hand_made_values():
    bench, emb = _hand()
    got = _values(evaluate_image_text_embeddings(bench, emb, emb, k=3, cross_lingual=False, caption_setting=False,
                                                 show_progress=False))
    i2t = ("image→text", "monolingual", "-")
    multi = ("image→text", "multilingual", "-", "all")
    want = {
        # per language, image queries: en ranks img0 e0 1, e0b 3; img1 e1 1; img2 e2 2 (e1 .8 above e2 .7)
        i2t + ("en", "mAP"): (5 / 6 + 1 + 1 / 2) / 3, i2t + ("en", "hit@1"): 2 / 3, i2t + ("en", "hit@5"): 1.0,
        i2t + ("en", "hit_mean"): (2 / 3 + 1 + 1) / 3,
        # de: img0 d0 rank 2, img1 d1 rank 3, img2 d2 rank 1
        i2t + ("de", "mAP"): (1 / 2 + 1 / 3 + 1) / 3, i2t + ("de", "hit@1"): 1 / 3, i2t + ("de", "hit_mean"): 7 / 9,
        # caption queries: rank of the right image: e0 1, e0b 2, e1 2 (.8 tied with image 2: pessimistic), e2 1;
        # d0 2, d1 2, d2 1
        ("text→image", "monolingual", "en", "-", "mAP"): (1 + .5 + .5 + 1) / 4,
        ("text→image", "monolingual", "en", "-", "hit@1"): .5,
        ("text→image", "monolingual", "de", "-", "mAP"): (.5 + .5 + 1) / 3,
        ("text→image", "monolingual", "de", "-", "hit_mean"): (1 / 3 + 1 + 1) / 3,
        # pooled: img0 e0 1, d0 4, e0b 5; img1 e1 2, d1 4; img2 d2 1, e2 3
        multi + ("mAP",): (.7 + .5 + 5 / 6) / 3, multi + ("R@10",): 1.0, multi + ("rank_distance",): 7 / 3,
        multi + ("MRV",): (1.5 + 1 + 1) / 3,  # population std of the best ranks (1, 4), (2, 4), (3, 1)
        # z-scored (worked out in tests/test_language_bias.py): rank distances 2, 6, 2; stds 1, 3, 1
        multi + ("rank_distance_z",): 10 / 3, multi + ("MRV_z",): 5 / 3,
        # top 3: img0 e0 d1 e1; img1 d0 e1 d2; img2 d2 e1 e2 -> de 4/9, en 5/9
        multi + ("top3_share:de",): 4 / 9, multi + ("top3_share:en",): 5 / 9,
        multi + ("top3_share_max_minus_min",): 1 / 9,
    }
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


# --------------------------------------------------------------------------- the model wrapper
class _Model:
    """Embeds by table lookup; counts image encodings; an optional perfect re-scorer."""

    def __init__(self, bench, q, c, rescorer: bool = False):
        self.table = {x.text: q[i] for i, x in enumerate(bench.queries) if x.modality == "text"}
        self.images = {x.image: q[i] for i, x in enumerate(bench.queries) if x.modality == "image"}
        self.image_calls = 0
        if rescorer:
            qx = np.array([x.xid for x in bench.queries])
            cx = np.array([x.xids[0] for x in bench.candidates])
            self.rescore = lambda b: lambda qi, ci: torch.as_tensor(
                10.0 * (qx[qi.numpy()][:, None] == cx[ci.numpy()]) + 1e-3 * ci.numpy())
            self.rescore_k = 50

    def encode(self, texts, kind="passage", batch_size=64, show_progress=None):
        return torch.as_tensor(np.stack([self.table[t] for t in texts]))

    def encode_images(self, images, batch_size=64, show_progress=None):
        self.image_calls += len(images)
        return torch.as_tensor(np.stack([self.images[x] for x in images]))


def test_evaluate_image_text_encodes_each_image_once_and_passes_the_rescore_hook():
    bench, q, c = _case(seed=7)
    model = _Model(bench, q, c)
    df = evaluate_image_text(model, bench, caption_setting=False, show_progress=False)
    assert model.image_calls == 14
    pd.testing.assert_frame_equal(df, evaluate_image_text_embeddings(bench, q, c, caption_setting=False,
                                                                     show_progress=False))
    perfect = evaluate_image_text(_Model(bench, q, c, rescorer=True), bench, cross_lingual=False,
                                  caption_setting=False, show_progress=False)
    hits = perfect[perfect.metric.str.startswith("hit")]
    assert len(hits) and (hits.value == 1.0).all()  # re-scored with the benchmark's own indices
    assert {"MRV", "rank_distance_z", "rank_distance"} <= set(perfect.metric)
    text_only = type("TextOnly", (), {"encode": _Model.encode})()
    with pytest.raises(ConfigError, match="no image tower"):
        evaluate_image_text(text_only, bench)


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_fix():
    bench, q, c = _case()
    with pytest.raises(DataError, match="one row per item"):
        evaluate_image_text_embeddings(bench, q[:-1], c)
    with pytest.raises(DataError, match="same model"):
        evaluate_image_text_embeddings(bench, q, c[:, :-1])
    bad = c.copy()
    bad[3, 0] = np.nan
    with pytest.raises(DataError, match="re-encode"):
        evaluate_image_text_embeddings(bench, q, bad)
    texts = RetrievalBenchmark("t", [x for x in bench.queries if x.modality == "text"],
                               [x for x in bench.candidates if x.modality == "text"])
    with pytest.raises(ConfigError, match="no images.*evaluate_embeddings"):
        evaluate_image_text_embeddings(texts, np.ones((len(texts.queries), 4)), np.ones((len(texts.candidates), 4)))
    images = RetrievalBenchmark("i", [x for x in bench.queries if x.modality == "image"],
                                [x for x in bench.candidates if x.modality == "image"])
    with pytest.raises(ConfigError, match="no caption candidates.*to_benchmark"):
        evaluate_image_text_embeddings(images, np.ones((14, 4)), np.ones((14, 4)))
    for kw, msg in (({"hit_ks": (0,)}, "hit_ks"), ({"k": 0}, "k must"), ({"chunk_size": 0}, "chunk_size"),
                    ({"rescore": 3}, "rescore must")):
        with pytest.raises(ConfigError, match=msg):
            evaluate_image_text_embeddings(bench, q, c, **kw)
