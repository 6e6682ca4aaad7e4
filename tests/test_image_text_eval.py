"""hbkit.image_text_eval: every §2.2 setting from one call, equal to the definitions it composes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hbkit.datasets.images import ImageCaptionSet
from hbkit.errors import ConfigError, DataError
from hbkit.evaluation import evaluate_embeddings
from hbkit.image_text_eval import evaluate_image_text_embeddings
from hbkit.language_bias import language_bias_table
from hbkit.parallel import ImageRef

LANGS = ("de", "en", "ru")


def _case(n_img: int = 14, per_lang=(2, 1, 2), dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = tuple(f"img{i}" for i in range(n_img))
    caps = {lang: tuple(tuple(f"{lang} caption {j} of {i}" for j in range(k)) for i in range(n_img))
            for lang, k in zip(LANGS, per_lang)}
    bench = ImageCaptionSet("toy", ids, tuple(ImageRef(f"{i}.png") for i in ids), caps).to_benchmark()
    latent = rng.standard_normal((n_img, dim))
    xid = {x: i for i, x in enumerate(ids)}

    def emb(items):
        out = np.stack([latent[xid[it.xids[0] if hasattr(it, "xids") else it.xid]] + 1.2 * rng.standard_normal(dim)
                        for it in items])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    c = emb(bench.candidates)
    q = np.empty((len(bench.queries), dim))
    pos = {cd.cid: j for j, cd in enumerate(bench.candidates)}
    for i, qq in enumerate(bench.queries):  # a query shares its candidate twin's embedding (same item)
        q[i] = c[pos[qq.qid]]
    return bench, q.astype(np.float32), c.astype(np.float32)


def _clip_benchmark_recall(text_emb, image_emb, text_image, k: int) -> tuple[float, float]:
    """CLIP_benchmark's formula, written independently: full score matrix, topk, any positive hit."""
    scores = torch.as_tensor(text_emb) @ torch.as_tensor(image_emb).T  # (n_text, n_image)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(text_image)), torch.as_tensor(text_image)] = True
    top_t2i = scores.topk(k, dim=1).indices
    t2i = positive.gather(1, top_t2i).any(1).float().mean().item()
    top_i2t = scores.T.topk(k, dim=1).indices
    i2t = positive.T.gather(1, top_i2t).any(1).float().mean().item()
    return t2i, i2t


def test_monolingual_rows_equal_clip_benchmark_per_language():
    bench, q, c = _case()
    df = evaluate_image_text_embeddings(bench, q, c, show_progress=False)
    img_idx = [j for j, cd in enumerate(bench.candidates) if cd.modality == "image"]
    img_of = {bench.candidates[j].xids[0]: n for n, j in enumerate(img_idx)}
    for lang in LANGS:
        cap = [j for j, cd in enumerate(bench.candidates) if cd.lang == lang]
        for k in (1, 5, 10):
            t2i, i2t = _clip_benchmark_recall(c[cap], c[img_idx], [img_of[bench.candidates[j].xids[0]] for j in cap], k)
            m = f"hit@{k}"
            got_t2i = df.query("direction == 'text→image' and query_lang == @lang and metric == @m").value
            got_i2t = df.query("direction == 'image→text' and setting == 'monolingual' and candidate_lang == @lang "
                               "and metric == @m").value
            assert got_t2i.item() == pytest.approx(t2i, abs=1e-6)
            assert got_i2t.item() == pytest.approx(i2t, abs=1e-6)
        row = df.query("direction == 'text→image' and query_lang == @lang")
        hits = row[row.metric.isin(["hit@1", "hit@5", "hit@10"])].value.mean()
        assert row[row.metric == "hit_mean"].value.item() == pytest.approx(hits)
    assert 0 < df[df.metric == "hit@1"].value.mean() < 1  # a case that is neither solved nor hopeless


def test_rows_equal_the_definitions_they_compose():
    bench, q, c = _case(seed=3)
    df = evaluate_image_text_embeddings(bench, q, c, show_progress=False)
    full = evaluate_embeddings(bench, q, c, show_progress=False, ks_mono=(1,), ks_multi=(10,), hit_ks=(1, 5, 10))
    key = ["direction", "setting", "query_lang", "candidate_lang", "metric"]
    for direction, setting, metrics in [("text→image", "monolingual", ["hit@1", "hit@5", "hit@10", "mAP"]),
                                        ("image→text", "monolingual", ["hit@1", "hit@10", "mAP"]),
                                        ("image→text", "multilingual", ["mAP", "R@10", "rank_distance"]),
                                        ("text→text", "cross-lingual", ["mAP", "R@1"])]:
        sel = lambda d: d[(d.direction == direction) & (d.setting == setting) & d.metric.isin(metrics)]  # noqa: E731
        a, b = sel(df).set_index(key).value.sort_index(), sel(full).set_index(key).value.sort_index()
        assert len(a) and a.index.equals(b.index), (direction, setting)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    bias = language_bias_table(bench, q, c)
    mine = df[df.direction.isin(bias.direction.unique()) & df.metric.isin(bias.metric.unique())
              & ~((df.direction == "image→text") & df.metric.isin(["mAP", "R@10", "rank_distance"]))]
    pd.testing.assert_frame_equal(mine.sort_values(key).reset_index(drop=True)[bias.columns],
                                  bias.sort_values(key).reset_index(drop=True), check_dtype=False)
    # no self-relevant caption rows: the text→text monolingual / multilingual rows are replaced
    assert not ((df.direction == "text→text") & (df.setting != "cross-lingual")).any()


def test_options_chunking_and_rescoring():
    bench, q, c = _case(seed=5)
    a = evaluate_image_text_embeddings(bench, q, c, show_progress=False)
    b = evaluate_image_text_embeddings(bench, q, c, show_progress=False, chunk_size=2)
    pd.testing.assert_frame_equal(a, b)
    lean = evaluate_image_text_embeddings(bench, q, c, show_progress=False, cross_lingual=False, caption_setting=False)
    assert set(lean.direction) == {"text→image", "image→text"}
    # a re-scorer that knows the answer (distinct scores: ties rank pessimistically): indices must be the
    # benchmark's, so every query gets hit@1 = 1
    qx = np.array([qq.xid for qq in bench.queries])
    cx = np.array([cd.xids[0] for cd in bench.candidates])
    perfect = evaluate_image_text_embeddings(
        bench, q, c, show_progress=False, cross_lingual=False, caption_setting=False, rescore_k=50,
        rescore=lambda qi, ci: torch.as_tensor(10.0 * (qx[qi.numpy()][:, None] == cx[ci.numpy()]) + 1e-3 * ci.numpy()))
    assert perfect[perfect.metric == "hit@1"].value.min() == 1.0


def test_bad_inputs_name_the_fix():
    bench, q, c = _case()
    with pytest.raises(DataError, match="one row per item"):
        evaluate_image_text_embeddings(bench, q[:-1], c)
    text_only = ImageCaptionSet("t", ("a",), (ImageRef("a.png"),), {"en": (("x",),)}).to_benchmark()
    from hbkit.benchmark import RetrievalBenchmark

    no_images = RetrievalBenchmark("t", [x for x in text_only.queries if x.modality == "text"],
                                   [x for x in text_only.candidates if x.modality == "text"])
    with pytest.raises(ConfigError, match="no images"):
        evaluate_image_text_embeddings(no_images, np.ones((1, 4)), np.ones((1, 4)))
