"""The embedded toy image world: pixels, captions, datasets and determinism."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hbkit.datasets.image_world import (BACKGROUND, COLOURS, COUNTS, N_SCENES, N_TEMPLATES, POSITIONS, SHAPES,
                                        SIZES, make_image_world, render_scene, scene_image)
from hbkit.datasets.images import check_overlap
from hbkit.errors import ConfigError
from hbkit.parallel import ImageRef, ParallelDataset

LANGS = ("en", "es", "de", "ru", "ar", "hi", "el")
_PUNCT = ".,;:?!؟।。？"
_DIGITS = {"ar": "٠١٢٣٤٥٦٧٨٩", "hi": "०१२३४५६७८९"}


@pytest.fixture(scope="module")
def world():
    return make_image_world(seed=3, n_train_images=40, n_test_images=12, captions_per_language=N_TEMPLATES)


def _tokens(caption: str) -> list[str]:
    return caption.lower().translate({ord(c): " " for c in _PUNCT}).split()


def test_one_large_blue_square_pixels():
    img = render_scene("square", "blue", "large", 1, "top_left", image_size=32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    blue = (img == COLOURS["blue"]).all(-1)
    ys, xs = np.nonzero(blue)
    # radius 0.09 * 32 = 2.88 px around the top-left quadrant's centre (8, 8): pixels 5..10
    assert blue.sum() == 36
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (5, 10, 5, 10)
    assert (img[~blue] == BACKGROUND).all()
    big = render_scene("square", "blue", "large", 1, "top_left", image_size=64)
    assert (big == COLOURS["blue"]).all(-1).sum() == 144
    shifted = render_scene("square", "blue", "large", 1, "top_left", image_size=32, offset=(2, -1))
    ys2, xs2 = np.nonzero((shifted == COLOURS["blue"]).all(-1))
    assert (ys2.min(), xs2.min()) == (4, 7)


def _components(mask: np.ndarray) -> int:
    """Number of 4-connected components of a boolean mask."""
    seen = np.zeros_like(mask)
    n = 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        n += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return n


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("count", COUNTS)
def test_objects_counted_sized_and_placed(shape, count):
    for position, (x0, y0) in {"top_left": (0, 0), "top_right": (16, 0), "bottom_left": (0, 16),
                               "bottom_right": (16, 16), "centre": (8, 8)}.items():
        areas = {}
        for size in SIZES:
            img = render_scene(shape, "red", size, count, position, image_size=32, offset=(1, -1))
            mask = (img == COLOURS["red"]).all(-1)
            assert ((img == COLOURS["red"]).all(-1) | (img == BACKGROUND).all(-1)).all()
            assert _components(mask) == count
            ys, xs = np.nonzero(mask)
            # the whole scene (shifted by at most 1 px) stays in its 16x16 region
            assert xs.min() >= x0 and xs.max() <= x0 + 16 and ys.min() >= y0 - 1 and ys.max() <= y0 + 15
            areas[size] = mask.sum()
        assert areas["large"] >= 2 * areas["small"] > 0


def test_shapes_and_colours_differ():
    masks = {s: (render_scene(s, "green", "large", 1, "centre", image_size=48) == COLOURS["green"]).all(-1)
             for s in SHAPES}
    sums = {s: int(m.sum()) for s, m in masks.items()}
    assert sums["square"] > sums["circle"] > sums["diamond"] and sums["triangle"] < sums["square"]
    assert len({m.tobytes() for m in masks.values()}) == len(SHAPES)
    assert len({tuple(v) for v in COLOURS.values()} | {BACKGROUND}) == len(COLOURS) + 1
    with pytest.raises(ConfigError, match="Unknown shape 'hexagon'"):
        render_scene("hexagon", "red", "small", 1, "centre")


def test_dataset_and_benchmark_shapes(world):
    n_train, n_test, k, train_langs = 40, 12, N_TEMPLATES, 6
    train = world.train
    assert isinstance(train, ParallelDataset) and train.modality == "image" and not train.passage_has_language
    assert len(train) == n_train and train.num_items == n_train * train_langs * k
    assert train.languages == sorted(LANGS[:6]) and train.max_items_per_language == k
    for g, gid in enumerate(train.groups):
        assert train.image(g) == ImageRef(f"{gid}.png")
        for lang in LANGS[:6]:
            assert train.count(g, lang) == k
            assert train.item(g, lang, 0).positive == ImageRef(f"{gid}.png")
    bench = world.benchmark
    n_caps = n_test * len(LANGS) * k
    assert len(bench.queries) == len(bench.candidates) == n_test + n_caps
    image_queries = [q for q in bench.queries if q.image is not None]
    assert len(image_queries) == n_test
    assert all(q.lang is None and q.text == "" and q.qid == f"image:{q.xid}" and q.image == ImageRef(f"{q.xid}.png")
               for q in image_queries)
    assert bench.query_langs == sorted(LANGS) and bench.query_modalities == ["image", "text"]
    for lang in LANGS:
        assert len(bench.queries_in(lang)) == len(bench.candidates_in(lang)) == n_test * k
    for q, rel in zip(bench.queries, bench.relevant):
        assert len(rel) == 1 + len(LANGS) * k
        assert all(bench.candidates[i].xids == (q.xid,) for i in rel)
        assert sum(bench.candidates[i].image is not None for i in rel) == 1


def test_train_and_test_disjoint(world):
    train_ids = set(world.train_set.ids)
    test_ids = set(world.test_set.ids)
    assert len(train_ids) == 40 and len(test_ids) == 12 and not train_ids & test_ids
    tr = {world.scene(i).attributes for i in train_ids}
    te = {world.scene(i).attributes for i in test_ids}
    assert len(tr) == 40 and len(te) == 12 and not tr & te
    record = check_overlap(world.train, world.benchmark)
    assert record["overlap"] == 0 and record["train_images"] == 40 and record["eval_images"] == 12
    # eval-only Greek and test captions stay out of training data and tokenizer texts
    assert "el" not in world.train.languages
    texts = set(world.texts())
    test_caps = {c for lang in LANGS for i in test_ids for c in world.captions(i, lang)}
    assert not texts & test_caps
    assert texts >= {c for c in world.captions(world.train_set.ids[0], "el")}
    assert len(world.texts(include_eval_only=False)) < len(texts)


def test_captions_describe_the_same_attributes_in_every_language(world):
    for sc in world.scenes:
        for lang in LANGS:
            lex = world.lexicon(lang)
            digit = _DIGITS.get(lang, "0123456789")[sc.count]
            pos_words = {"top_left": ("top", "left"), "top_right": ("top", "right"),
                         "bottom_left": ("bottom", "left"), "bottom_right": ("bottom", "right"),
                         "centre": ("middle",)}[sc.position]
            caps = world.captions(sc.image_id, lang)
            assert len(caps) == N_TEMPLATES and len(set(caps)) == N_TEMPLATES
            for cap in caps:
                toks = _tokens(cap)
                noun = lex[f"shape:{sc.shape}"] + (lex["plural"] if sc.count > 1 else "")
                assert noun in toks, (lang, cap)
                assert lex[f"colour:{sc.colour}"] in toks and lex[f"size:{sc.size}"] in toks
                assert lex[f"count:{sc.count}"] in toks or digit in toks
                assert all(lex[f"pos:{w}"] in toks for w in pos_words)
                # no other value of any attribute is named
                others = [lex[f"colour:{c}"] for c in COLOURS if c != sc.colour] + \
                         [lex[f"size:{s}"] for s in SIZES if s != sc.size] + \
                         [lex[f"shape:{s}"] + suf for s in SHAPES if s != sc.shape for suf in ("", lex["plural"])] + \
                         [lex[f"count:{n}"] for n in COUNTS if n != sc.count] + \
                         [lex[f"pos:{w}"] for w in ("top", "bottom", "left", "right", "middle") if w not in pos_words]
                assert not set(others) & set(toks), (lang, cap)


def test_scripts_and_lexicons_differ(world):
    en, ru, ar, hi = (world.lexicon(x)["colour:red"] for x in ("en", "ru", "ar", "hi"))
    assert en.isascii() and all("\u0400" <= c <= "\u04ff" for c in ru)
    assert all("\u0600" <= c <= "\u06ff" for c in ar) and all("\u0900" <= c <= "\u097f" for c in hi)
    assert world.lexicon("en") != world.lexicon("es")
    cap = world.captions(world.scenes[0].image_id, "el")[0]
    assert not any(c.isascii() and c.isalpha() for c in cap)


def test_paraphrases_have_differing_word_order(world):
    for lang in LANGS:
        lex = world.lexicon(lang)
        size_first, loc_first = set(), set()
        for sc in world.scenes:
            for cap in world.captions(sc.image_id, lang):
                toks = _tokens(cap)
                size_first.add(toks.index(lex[f"size:{sc.size}"]) < toks.index(lex[f"colour:{sc.colour}"]))
                loc_first.add(toks.index(lex["at"]) < toks.index(lex[f"colour:{sc.colour}"]))
        assert size_first == {True, False}, lang
        assert loc_first == {True, False}, lang
    w1 = make_image_world(seed=3, n_train_images=40, n_test_images=12, captions_per_language=2)
    per_image = [w1.captions(i, "en") for i in w1.train_set.ids]
    assert all(len(set(c)) == 2 for c in per_image)
    assert len({tuple(sorted(c)) for c in per_image}) == 40


def test_determinism_and_png_files(tmp_path):
    a = make_image_world(seed=5, n_train_images=20, n_test_images=5)
    b = make_image_world(seed=5, n_train_images=20, n_test_images=5)
    c = make_image_world(seed=6, n_train_images=20, n_test_images=5)
    assert a.texts() == b.texts() and a.texts() != c.texts()
    assert [q.text for q in a.benchmark.queries] == [q.text for q in b.benchmark.queries]
    assert [s.attributes for s in a.scenes] != [s.attributes for s in c.scenes]
    assert a.image_root is None
    root = a.write_images(tmp_path / "a")
    assert a.image_root == str(root) and root.is_absolute()
    files = sorted(p.name for p in root.iterdir())
    assert files == sorted(f"{s.image_id}.png" for s in a.scenes) and len(files) == 25
    b.write_images(tmp_path / "b")
    c.write_images(tmp_path / "c")
    for name in files:
        assert (root / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    c_files = sorted((tmp_path / "c").iterdir())
    assert [p.name for p in c_files] == [n.replace("shapes5-", "shapes6-") for n in files]
    differ = [(root / n).read_bytes() != p.read_bytes() for n, p in zip(files, c_files)]
    assert sum(differ) >= 20
    # decoded PNGs are the rendered pixels; a rewrite leaves identical files untouched
    sc = a.scenes[3]
    decoded = np.asarray(Image.open(io.BytesIO((root / sc.file_name).read_bytes())).convert("RGB"))
    assert np.array_equal(decoded, a.render(sc.image_id))
    assert np.array_equal(np.asarray(scene_image(sc)), decoded)
    mtimes = {n: (root / n).stat().st_mtime_ns for n in files}
    (root / files[0]).write_bytes(b"stale")
    a.write_images(root)
    assert (root / files[0]).read_bytes() == a.png_bytes(files[0][:-4])
    assert all((root / n).stat().st_mtime_ns == mtimes[n] for n in files[1:])
    d = make_image_world(seed=5, n_train_images=20, n_test_images=5, out_dir=tmp_path / "d", image_size=48)
    assert d.image_root == str((tmp_path / "d").resolve())
    assert np.asarray(Image.open(tmp_path / "d" / files[0])).shape == (48, 48, 3)


def test_options_and_errors():
    w = make_image_world(seed=0, n_train_images=10, n_test_images=4, languages=["en", "ru"],
                         eval_only_languages=(), captions_per_language=1)
    assert w.languages == ("en", "ru") and w.train.num_items == 10 * 2 * 1
    assert len(w.benchmark.queries) == 4 + 4 * 2
    assert len(make_image_world(n_train_images=N_SCENES - 1, n_test_images=1).scenes) == N_SCENES
    for kwargs, msg in (({"n_train_images": N_SCENES, "n_test_images": 1}, "840 distinct scenes"),
                        ({"captions_per_language": N_TEMPLATES + 1}, "between 1 and 4"),
                        ({"languages": ["en"]}, "at least 2 training languages"),
                        ({"languages": ["en", "el"]}, "both training and eval-only"),
                        ({"image_size": 8}, "image_size must be"), ({"seed": "x"}, "seed must be an integer")):
        with pytest.raises(ConfigError, match=msg):
            make_image_world(**{"n_train_images": 10, "n_test_images": 2, **kwargs})
    assert len(POSITIONS) * len(SHAPES) * len(COLOURS) * len(SIZES) * len(COUNTS) == N_SCENES
