"""Image–text directions on a hand-made benchmark: 3 images, captions in en (image 0 has two) and de.

Images embed as the basis vectors of R^3 and a caption as the column of the score matrix S
below, so every image–caption score is exactly an entry of S (ties included) and every
expected value is computed by hand in the comments.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.errors import ConfigError
from hbkit.evaluation import (ALL_LANGUAGES, IMAGE_TO_TEXT, NO_LANGUAGE, TEXT_TO_IMAGE, TEXT_TO_TEXT,
                              evaluate_embeddings, evaluate_model, headline, per_query_language)
from hbkit.parallel import ImageRef

CAPTIONS = [("e0", "en", "x0"), ("e0b", "en", "x0"), ("e1", "en", "x1"), ("e2", "en", "x2"),
            ("d0", "de", "x0"), ("d1", "de", "x1"), ("d2", "de", "x2")]
#            e0   e0b  e1   e2   d0    d1   d2
S = np.array([[.9, .2, .5, .1, .4, .6, .0],     # image 0
              [.3, .1, .8, .2, .85, .5, .6],    # image 1
              [.1, .3, .8, .7, .2, .3, .9]],    # image 2
             dtype=np.float32)
IMG_EMB = np.eye(3, dtype=np.float32)
CAP_EMB = np.ascontiguousarray(S.T)


def _images_as_queries():
    return [Query(f"img{i}", f"x{i}", None, "", image=ImageRef(f"img{i}.jpg")) for i in range(3)]


def _images_as_candidates():
    return [Candidate(f"img{i}", None, "", "", (f"x{i}",), image=ImageRef(f"img{i}.jpg")) for i in range(3)]


def i2t_bench() -> RetrievalBenchmark:
    return RetrievalBenchmark("toy-i2t", _images_as_queries(),
                              [Candidate(cid, lang, f"caption {cid}", "", (x,)) for cid, lang, x in CAPTIONS])


def t2i_bench() -> RetrievalBenchmark:
    return RetrievalBenchmark("toy-t2i", [Query(cid, x, lang, f"caption {cid}") for cid, lang, x in CAPTIONS],
                              _images_as_candidates())


def _values(df) -> dict:
    return {(r.direction, r.setting, r.query_lang, r.candidate_lang, r.metric): (r.value, r.n_queries)
            for r in df.itertuples()}


def test_image_to_text_hand_values():
    df = evaluate_embeddings(i2t_bench(), IMG_EMB, CAP_EMB)
    assert (df.direction == IMAGE_TO_TEXT).all() and (df.query_lang == NO_LANGUAGE).all()
    got = _values(df)
    multi = (IMAGE_TO_TEXT, "multilingual", NO_LANGUAGE, ALL_LANGUAGES)
    en = (IMAGE_TO_TEXT, "monolingual", NO_LANGUAGE, "en")
    de = (IMAGE_TO_TEXT, "monolingual", NO_LANGUAGE, "de")
    # pooled ranks: image 0: e0 1, d0 4, e0b 5; image 1: e1 2, d1 4; image 2: d2 1, e2 3 (d2 .9 > e1 .8 > e2 .7)
    # AP: (1 + 2/4 + 3/5)/3 = .7; (1/2 + 2/4)/2 = .5; (1 + 2/3)/2 = 5/6
    # rank distance (best rank per language): |1 - 4| = 3, |2 - 4| = 2, |3 - 1| = 2
    want = {
        multi + ("mAP",): (.7 + .5 + 5 / 6) / 3,
        multi + ("R@1",): (1 / 3 + 0 + 1 / 2) / 3,
        multi + ("R@10",): 1.0,
        multi + ("hit@1",): 2 / 3, multi + ("hit@5",): 1.0, multi + ("hit@10",): 1.0,
        multi + ("rank_distance",): 7 / 3,
        # en captions: image 0: e0 1, e0b 3 -> AP 5/6; image 1: e1 1; image 2: e1 .8 above e2 .7 -> rank 2
        en + ("mAP",): (5 / 6 + 1 + 1 / 2) / 3, en + ("hit@1",): 2 / 3, en + ("hit@5",): 1.0, en + ("hit@10",): 1.0,
        # de captions: image 0: d0 rank 2; image 1: d1 rank 3; image 2: d2 rank 1
        de + ("mAP",): (1 / 2 + 1 / 3 + 1) / 3, de + ("hit@1",): 1 / 3, de + ("hit@5",): 1.0, de + ("hit@10",): 1.0,
    }
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key][0] == pytest.approx(value, abs=1e-12), key
        assert got[key][1] == 3
    # the per-language rows are the monolingual image→text setting: R@k only when asked for
    with_r = _values(evaluate_embeddings(i2t_bench(), IMG_EMB, CAP_EMB, ks_mono=(1,), hit_ks=(1,)))
    assert with_r[en + ("R@1",)][0] == pytest.approx((1 / 2 + 1 + 0) / 3)  # image 0: 1 of its 2 en captions
    assert with_r[en + ("hit@1",)][0] == pytest.approx(2 / 3)


def test_text_to_image_hand_values():
    df = evaluate_embeddings(t2i_bench(), CAP_EMB, IMG_EMB)
    assert (df.direction == TEXT_TO_IMAGE).all() and set(df.setting) == {"monolingual"}
    assert (df.candidate_lang == NO_LANGUAGE).all()
    got = _values(df)
    # ranks of the right image (score column of S): e0 1, e0b 2, e1 2 (.8 tied with image 2: pessimistic), e2 1;
    # d0 2, d1 2, d2 1
    want = {("en", "mAP"): (1 + .5 + .5 + 1) / 4, ("en", "hit@1"): .5, ("en", "hit@5"): 1.0, ("en", "hit@10"): 1.0,
            ("de", "mAP"): (.5 + .5 + 1) / 3, ("de", "hit@1"): 1 / 3, ("de", "hit@5"): 1.0, ("de", "hit@10"): 1.0}
    assert {(k[2], k[4]) for k in got} == set(want)
    for (lang, metric), value in want.items():
        v, n = got[(TEXT_TO_IMAGE, "monolingual", lang, NO_LANGUAGE, metric)]
        assert v == pytest.approx(value, abs=1e-12) and n == (4 if lang == "en" else 3)
    # no image->text multilingual for text queries; asking for multilingual only gives nothing
    assert evaluate_embeddings(t2i_bench(), CAP_EMB, IMG_EMB, settings=("multilingual",)).empty


def test_mixed_benchmark_evaluates_each_direction_on_its_own():
    # images and captions on both sides: image→text, text→text and text→image blocks (image→image skipped)
    i2t, t2i = i2t_bench(), t2i_bench()
    bench = RetrievalBenchmark("toy", i2t.queries + t2i.queries, i2t.candidates + t2i.candidates)
    q = np.concatenate([IMG_EMB, CAP_EMB])
    c = np.concatenate([CAP_EMB, IMG_EMB])
    df = evaluate_embeddings(bench, q, c)
    assert list(dict.fromkeys(df.direction)) == [TEXT_TO_TEXT, TEXT_TO_IMAGE, IMAGE_TO_TEXT]
    for direction, alone in ((IMAGE_TO_TEXT, evaluate_embeddings(i2t, IMG_EMB, CAP_EMB)),
                             (TEXT_TO_IMAGE, evaluate_embeddings(t2i, CAP_EMB, IMG_EMB))):
        part = df[df.direction == direction].drop(columns="benchmark").reset_index(drop=True)
        pd.testing.assert_frame_equal(part, alone.drop(columns="benchmark"))
    tt = df[df.direction == TEXT_TO_TEXT]
    assert set(tt.setting) == {"monolingual", "cross-lingual", "multilingual"}
    assert set(tt.metric) == {"mAP", "R@1", "R@10", "rank_distance"}  # text→text defaults: no hit@k
    with pytest.raises(ConfigError, match="image→image"):
        evaluate_embeddings(RetrievalBenchmark("ii", _images_as_queries(), _images_as_candidates()), IMG_EMB, IMG_EMB)


def test_headline_per_direction():
    df = pd.concat([evaluate_embeddings(i2t_bench(), IMG_EMB, CAP_EMB),
                    evaluate_embeddings(t2i_bench(), CAP_EMB, IMG_EMB)], ignore_index=True)
    hl = headline(df).set_index(["direction", "setting", "metric"])
    assert hl.index.is_unique
    # image→text monolingual: mean over caption languages (the image queries have no language)
    assert hl.loc[(IMAGE_TO_TEXT, "monolingual", "mAP"), "value"] == pytest.approx((7 / 9 + 11 / 18) / 2)
    assert hl.loc[(IMAGE_TO_TEXT, "monolingual", "mAP"), "n_query_langs"] == 1
    # text→image monolingual: mean over caption (query) languages, not mixed with image→text
    row = hl.loc[(TEXT_TO_IMAGE, "monolingual", "mAP")]
    assert row.value == pytest.approx((.75 + 2 / 3) / 2)
    assert (row.n_query_langs, row.n_queries_min, row.n_queries_max) == (2, 3, 4)
    pq = per_query_language(df).set_index(["direction", "setting", "query_lang", "metric"])
    assert pq.loc[(IMAGE_TO_TEXT, "monolingual", NO_LANGUAGE, "hit@1"), "n_candidate_langs"] == 2
    assert pq.loc[(IMAGE_TO_TEXT, "monolingual", NO_LANGUAGE, "hit@1"), "value"] == pytest.approx((2 / 3 + 1 / 3) / 2)


def _reverse(q_emb, c_emb):
    q, c = torch.as_tensor(q_emb), torch.as_tensor(c_emb)
    return lambda qi, ci: -(q[qi].unsqueeze(1) * c[ci]).sum(-1)


def test_rescore_reverses_the_top_k():
    bench = t2i_bench()
    got = _values(evaluate_embeddings(bench, CAP_EMB, IMG_EMB, rescore=_reverse(CAP_EMB, IMG_EMB), rescore_k=2))
    # top 2 reversed: e0 (.9, .3) -> image 0 second; e0b (.3, .2) -> image 0 first; e1 (.8, .8): a tie stays a
    # tie (rank 2); e2 -> 2; d0 (.85, .4) -> 1; d1 (.6, .5) -> 1; d2 -> 2
    m = lambda lang, metric: got[(TEXT_TO_IMAGE, "monolingual", lang, NO_LANGUAGE, metric)][0]  # noqa: E731
    assert m("en", "mAP") == pytest.approx((.5 + 1 + .5 + .5) / 4) and m("en", "hit@1") == pytest.approx(.25)
    assert m("de", "mAP") == pytest.approx((1 + 1 + .5) / 3) and m("de", "hit@1") == pytest.approx(2 / 3)
    # identity re-scoring of the top 1: e1's tie with image 2 at the cut-off goes to the lower index (image 1)
    ident = lambda qi, ci: (torch.as_tensor(CAP_EMB)[qi].unsqueeze(1) * torch.as_tensor(IMG_EMB)[ci]).sum(-1)  # noqa
    got1 = _values(evaluate_embeddings(bench, CAP_EMB, IMG_EMB, rescore=ident, rescore_k=1))
    assert got1[(TEXT_TO_IMAGE, "monolingual", "en", NO_LANGUAGE, "mAP")][0] == pytest.approx((1 + .5 + 1 + 1) / 4)
    assert got1[(TEXT_TO_IMAGE, "monolingual", "de", NO_LANGUAGE, "mAP")][0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("make", [i2t_bench, t2i_bench])
def test_rescore_all_candidates(make):
    bench = make()
    q, c = (IMG_EMB, CAP_EMB) if make is i2t_bench else (CAP_EMB, IMG_EMB)
    plain = evaluate_embeddings(bench, q, c)
    ident = lambda qi, ci: (torch.as_tensor(q)[qi].unsqueeze(1) * torch.as_tensor(c)[ci]).sum(-1)  # noqa: E731
    # k >= n_candidates: the ranking is the re-scores' ranking, ties included
    pd.testing.assert_frame_equal(evaluate_embeddings(bench, q, c, rescore=ident, rescore_k=100), plain)
    pd.testing.assert_frame_equal(evaluate_embeddings(bench, q, c, rescore=_reverse(q, c), rescore_k=100),
                                  evaluate_embeddings(bench, -q, c))


class _ToyClip:
    """encode / encode_images with the hand-made embeddings; optional re-scoring hook."""

    def __init__(self, rescorer=None, k=None):
        self.calls, self._rescorer = [], rescorer
        if k is not None:
            self.rescore_k = k
        self.index = {cid: j for j, (cid, _, _) in enumerate(CAPTIONS)}

    def encode(self, texts, kind="passage", batch_size=64, show_progress=None, contexts=None):
        self.calls.append(("encode", kind, len(texts), batch_size))
        return torch.from_numpy(CAP_EMB[[self.index[t.split()[1]] for t in texts]])

    def encode_images(self, images, batch_size=64, show_progress=None):
        assert all(isinstance(im, ImageRef) for im in images)
        self.calls.append(("encode_images", len(images), batch_size))
        return torch.from_numpy(IMG_EMB[[int(im.key[3]) for im in images]])

    def rescore(self, bench):
        self.calls.append(("rescore", bench.name))
        return self._rescorer


def test_evaluate_model_by_modality_and_rescore_hook():
    i2t, t2i = i2t_bench(), t2i_bench()
    bench = RetrievalBenchmark("toy", i2t.queries + t2i.queries, i2t.candidates + t2i.candidates)
    q, c = np.concatenate([IMG_EMB, CAP_EMB]), np.concatenate([CAP_EMB, IMG_EMB])
    model = _ToyClip()
    df = evaluate_model(model, bench, batch_size=5)
    assert model.calls == [("encode", "query", 7, 5), ("encode_images", 3, 5), ("encode", "passage", 7, 5),
                           ("encode_images", 3, 5), ("rescore", "toy")]
    pd.testing.assert_frame_equal(df, evaluate_embeddings(bench, q, c))
    # a model's re-scorer and rescore_k are used ...
    rev = _reverse(q, c)
    hooked = evaluate_model(_ToyClip(rev, k=2), bench)
    pd.testing.assert_frame_equal(hooked, evaluate_embeddings(bench, q, c, rescore=rev, rescore_k=2))
    assert not hooked.equals(df)
    # ... unless the caller overrides them
    pd.testing.assert_frame_equal(evaluate_model(_ToyClip(rev, k=2), bench, rescore=None), df)


def test_text_model_on_images_is_refused():
    class TextOnly:
        def encode(self, texts, **kw):
            raise AssertionError("must fail before encoding")

    with pytest.raises(ConfigError, match="TextOnly has no image tower"):
        evaluate_model(TextOnly(), t2i_bench())
    with pytest.raises(ConfigError, match="TextOnly has no image tower"):
        evaluate_model(TextOnly(), i2t_bench())
