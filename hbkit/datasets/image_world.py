"""The embedded toy image world: generated scenes of shapes with multilingual captions.

This is a TOY, the image–text counterpart of :mod:`hbkit.datasets.demo_world`. Its images
are tiny generated RGB scenes (default 32x32 pixels) and its captions are written in the
demo world's synthetic languages labelled with real ISO codes (``en``, ``es``, ``de`` in
Latin script, ``ru`` Cyrillic, ``ar`` Arabic, ``hi`` Devanagari, ``el`` Greek for evaluation
only): invented lexicons in the real scripts, none of it real English, Russian or Arabic.
Numbers computed on it show the mechanics of the kit, never the paper's results.

How the world is built (all from one seed; numpy and Pillow only):

- A *scene* has five attributes: ``shape`` (circle, square, triangle, diamond), ``colour``
  (7 flat colours), ``size`` (small, large), ``count`` (1–3 identical objects) and
  ``position`` (a quadrant or the centre), e.g. "two small red circles at the top left".
  The objects sit at fixed slots of that region on a dark background; each image shifts
  its whole scene by a small integer offset (up to ``image_size // 32`` pixels). There are
  4 x 7 x 2 x 3 x 5 = 840 attribute tuples; every image has its own tuple, so train and test
  images never share an id or a tuple (test scenes are unseen *combinations*).
- Captions reuse the demo world's machinery (:mod:`.toy_language`): syllables rendered per script, per-language
  word order and punctuation, cognate stems across the Latin-script languages, digits
  written per script. Each language also has its own adjective order, adjective position
  (before or after the noun), order of the two position words, a plural suffix and (some)
  an article. Four caption templates give paraphrases with differing word order: a noun
  phrase ("two small red circles at the top left"), an existential sentence in the
  language's declarative order, a "picture with ..." phrase with the count in digits and
  the adjectives swapped, and a location-first existential sentence. Each image gets
  ``captions_per_language`` distinct templates per language, drawn independently per
  language.

Why the studied effect *can* appear (nothing is hard-coded): captions of one language share
their words, while matching captions across scripts, or images to captions in a language
seen with few images, needs what the training batches teach. Nothing in the generator
favours one batching strategy.
"""
from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets.images import ImageCaptionSet
from hbkit.datasets.toy_language import (CASED, COGNATE_SHARE, DEFAULT_TRAIN_LANGUAGES, GRAMMARS, check_langs,
                                         check_size, random_word, render, render_year, seeded_rng)
from hbkit.config import check_seed
from hbkit.engine.atomic import atomic_path
from hbkit.errors import ConfigError, DataError
from hbkit.languages import LANGUAGES, check_language, script_of
from hbkit.parallel import ImageRef, ParallelDataset

__all__ = ["SHAPES", "COLOURS", "BACKGROUND", "SIZES", "COUNTS", "POSITIONS", "N_SCENES", "N_TEMPLATES", "Scene",
           "ImageWorld",
           "render_scene", "scene_image", "make_image_world"]

# --------------------------------------------------------------------------- scenes

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
#: colour -> RGB (uint8).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 70), "blue": (40, 80, 230), "yellow": (235, 215, 40),
    "purple": (150, 60, 200), "orange": (245, 140, 30), "white": (240, 240, 240)}
BACKGROUND: tuple[int, int, int] = (40, 40, 40)
SIZES: tuple[str, ...] = ("small", "large")
COUNTS: tuple[int, ...] = (1, 2, 3)
POSITIONS: tuple[str, ...] = ("top_left", "top_right", "bottom_left", "bottom_right", "centre")
#: Object radius as a fraction of the image side (large: 6 px wide at 32 px).
_RADIUS = {"small": 0.05, "large": 0.09}
#: Top-left corner of each position's region (a half-side square), as a fraction of the image side.
_REGION = {"top_left": (0.0, 0.0), "top_right": (0.5, 0.0), "bottom_left": (0.0, 0.5),
           "bottom_right": (0.5, 0.5), "centre": (0.25, 0.25)}
#: Object centres (x, y) within the region, as fractions of the region side, per count.
_SLOTS = {1: ((0.5, 0.5),), 2: ((0.27, 0.27), (0.73, 0.73)), 3: ((0.27, 0.27), (0.73, 0.27), (0.5, 0.75))}
N_SCENES = len(SHAPES) * len(COLOURS) * len(SIZES) * len(COUNTS) * len(POSITIONS)


@dataclass(frozen=True)
class Scene:
    """One generated image: its id, split, attributes and pixel offset ``(dx, dy)``."""

    image_id: str
    split: str
    shape: str
    colour: str
    size: str
    count: int
    position: str
    offset: tuple[int, int] = (0, 0)

    @property
    def attributes(self) -> tuple[str, str, str, int, str]:
        """``(shape, colour, size, count, position)``."""
        return (self.shape, self.colour, self.size, self.count, self.position)

    @property
    def file_name(self) -> str:
        return f"{self.image_id}.png"


def _check_attrs(shape: str, colour: str, size: str, count: int, position: str) -> None:
    for name, value, allowed in (("shape", shape, SHAPES), ("colour", colour, tuple(COLOURS)),
                                 ("size", size, SIZES), ("count", count, COUNTS), ("position", position, POSITIONS)):
        if value not in allowed:
            raise ConfigError(f"Unknown {name} {value!r}; use one of {list(allowed)}.")


def render_scene(shape: str, colour: str, size: str, count: int, position: str, image_size: int = 32,
                 offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Draw one scene: ``count`` ``size`` ``colour`` ``shape``s in region ``position``.

    Returns a uint8 array of shape (image_size, image_size, 3), rows = y (top first).
    Pixels are either :data:`BACKGROUND` or the object colour (no anti-aliasing); a pixel
    belongs to an object when its centre lies inside the shape. ``offset`` shifts the
    whole scene by (dx, dy) pixels.
    """
    _check_attrs(shape, colour, size, count, position)
    s = check_size("image_size", image_size, 16, 1024)
    img = np.empty((s, s, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float64) + 0.5
    r = _RADIUS[size] * s
    rx, ry = _REGION[position]
    mask = np.zeros((s, s), dtype=bool)
    for fx, fy in _SLOTS[count]:
        cx = (rx + 0.5 * fx) * s + offset[0]
        cy = (ry + 0.5 * fy) * s + offset[1]
        dx, dy = xs - cx, ys - cy
        if shape == "circle":
            m = dx * dx + dy * dy <= r * r
        elif shape == "square":
            m = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        elif shape == "diamond":
            m = np.abs(dx) + np.abs(dy) <= r
        else:  # triangle, apex up: width grows from 0 at the top to 2r at the base
            m = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
        mask |= m
    img[mask] = COLOURS[colour]
    return img


def scene_image(scene: Scene, image_size: int = 32) -> Image.Image:
    """:func:`render_scene` of a :class:`Scene` as an RGB PIL image."""
    return Image.fromarray(render_scene(*scene.attributes, image_size=image_size, offset=scene.offset), "RGB")


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- captions

#: Caption templates (see the module doc); ``captions_per_language`` is at most this.
N_TEMPLATES = 4

#: lang -> (adjectives after the noun, size before colour, vertical before horizontal word, article).
_STYLE: dict[str, tuple[bool, bool, bool, bool]] = {
    "en": (False, True, True, True), "es": (True, False, True, True), "de": (False, True, True, True),
    "fr": (True, False, True, True), "tr": (False, True, True, False), "vi": (True, False, False, False),
    "ru": (False, True, True, False), "el": (False, True, True, True), "ar": (True, False, False, True),
    "hi": (False, True, True, False), "th": (True, False, False, False), "zh": (False, True, True, False)}
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
_POS_WORDS = {"top_left": ("top", "left"), "top_right": ("top", "right"), "bottom_left": ("bottom", "left"),
              "bottom_right": ("bottom", "right"), "centre": ("middle",)}
#: Lexicon concepts: (key, min syllables, max syllables, may be a cognate).
_CONCEPTS: tuple[tuple[str, int, int, bool], ...] = (
    tuple((k, 1, 2, False) for k in ("at", "there", "picture", "with", "the"))
    + tuple((f"count:{n}", 1, 2, False) for n in COUNTS)
    + tuple((f"pos:{w}", 2, 2, True) for w in ("top", "bottom", "left", "right", "middle"))
    + tuple((f"size:{v}", 2, 2, True) for v in SIZES)
    + tuple((f"colour:{c}", 2, 3, True) for c in COLOURS)
    + tuple((f"shape:{v}", 2, 3, True) for v in SHAPES))


def _image_lexicon(seed: int, lang: str) -> dict[str, str]:
    """concept -> word of one language (lower case, its script); ``"plural"`` is a noun suffix."""
    grammar, script = GRAMMARS[lang], script_of(lang)
    proto_rng, rng = seeded_rng(seed, "image-cognates"), seeded_rng(seed, "image-lexicon", lang)
    lexicon: dict[str, str] = {"plural": render(random_word(rng, 1, 1), script)}
    used = {lexicon["plural"]}
    for key, lo, hi, may_share in _CONCEPTS:
        stem, shared = random_word(proto_rng, max(lo, 2), hi), proto_rng.random() < COGNATE_SHARE
        own = render(random_word(rng, lo, hi), script)
        if may_share and shared and grammar.cognate_ending is not None:
            cognate = render(stem, script) + grammar.cognate_ending
            if cognate not in used:
                own = cognate
        noun = key.startswith("shape:")
        # words and plural nouns stay unique, so a caption names each concept unambiguously
        while own in used or own + lexicon["plural"] in used:
            own = render(random_word(rng, lo, hi), script)
        used |= {own, own + lexicon["plural"]} if noun else {own}
        lexicon[key] = own
    return lexicon


class _CaptionWriter:
    """Writes the captions of one language."""

    def __init__(self, seed: int, lang: str) -> None:
        self.lang, self.script, self.grammar = lang, script_of(lang), GRAMMARS[lang]
        self.after, self.size_first, self.vert_first, self.article = _STYLE[lang]
        self.lex = _image_lexicon(seed, lang)
        self.rng = seeded_rng(seed, "image-captions", lang)

    def _np(self, sc: Scene, digits: bool, swapped: bool) -> list[str]:
        lex = self.lex
        count = render_year(sc.count, self.script) if digits else lex[f"count:{sc.count}"]
        noun = lex[f"shape:{sc.shape}"] + (lex["plural"] if sc.count > 1 else "")
        adjs = [lex[f"size:{sc.size}"], lex[f"colour:{sc.colour}"]]
        if self.size_first == swapped:
            adjs.reverse()
        return [count] + ([noun] + adjs if self.after else adjs + [noun])

    def _loc(self, sc: Scene) -> list[str]:
        words = [self.lex[f"pos:{w}"] for w in _POS_WORDS[sc.position]]
        if not self.vert_first:
            words.reverse()
        if self.article:
            words = [self.lex["the"]] + words
        return words + [self.lex["at"]] if self.grammar.postpositions else [self.lex["at"]] + words

    def _sentence(self, words: list[str]) -> str:
        text = " ".join(words)
        if self.script in CASED:
            text = text[:1].upper() + text[1:]
        return text + self.grammar.end

    def caption(self, sc: Scene, template: int) -> str:
        """One caption of ``sc`` with template 0..N_TEMPLATES-1."""
        if template == 0:  # noun phrase + location
            return " ".join(self._np(sc, False, False) + self._loc(sc))
        if template == 1:  # existential sentence in the declarative order (S = objects, V = "there", O = place)
            slots = {"S": self._np(sc, False, False), "V": [self.lex["there"]], "O": self._loc(sc), "A": []}
            return self._sentence([w for slot in self.grammar.decl.split() for w in slots[slot]])
        if template == 2:  # "picture with <digits> ..." (adjectives swapped)
            head = [self.lex["picture"], self.lex["with"]]
            body = self._np(sc, True, True)
            if self.grammar.postpositions:
                head.reverse()
                return " ".join(body + head + self._loc(sc))
            return " ".join(head + body + self._loc(sc))
        if template == 3:  # location first, then "there" and the objects (adjectives swapped)
            return self._sentence(self._loc(sc) + [self.lex["there"]] + self._np(sc, False, True))
        raise ConfigError(f"Caption template must be 0..{N_TEMPLATES - 1}, got {template!r}.")

    def captions(self, sc: Scene, k: int) -> tuple[str, ...]:
        """``k`` captions of distinct templates (consumes this language's stream)."""
        return tuple(self.caption(sc, t) for t in self.rng.sample(range(N_TEMPLATES), k))


# --------------------------------------------------------------------------- the world


@dataclass
class ImageWorld:
    """A generated TOY image–text world.

    ``train``: image–caption ParallelDataset of the training images in the training
    languages (group = image id, several captions per language, positive = ImageRef of
    the file name). ``benchmark``: the test images and their captions in every language
    (eval-only ones included) as queries and candidates (``ImageCaptionSet.to_benchmark``).
    ImageRef keys are file names relative to ``image_root`` (set once images are written).
    """

    seed: int
    image_size: int
    languages: tuple[str, ...]
    train_languages: tuple[str, ...]
    eval_only_languages: tuple[str, ...]
    captions_per_language: int
    scenes: tuple[Scene, ...] = field(repr=False)
    train_set: ImageCaptionSet = field(repr=False)
    test_set: ImageCaptionSet = field(repr=False)
    train: ParallelDataset = field(repr=False)
    benchmark: RetrievalBenchmark = field(repr=False)
    image_root: str | None = None
    _lexicons: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    _by_id: dict[str, Scene] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"ImageWorld(TOY, seed={self.seed}, {self.image_size}px, train_languages={list(self.train_languages)}, "
                f"eval_only={list(self.eval_only_languages)}, train={len(self.train_set.ids)} images, "
                f"test={len(self.test_set.ids)} images, image_root={self.image_root!r})")

    def scene(self, image_id: str) -> Scene:
        """The scene of ``image_id``."""
        try:
            return self._by_id[image_id]
        except KeyError:
            raise ConfigError(f"No image {image_id!r} in this image world; ids look like "
                              f"{self.scenes[0].image_id!r}.") from None

    def captions(self, image_id: str, lang: str) -> tuple[str, ...]:
        """The captions of ``image_id`` in ``lang``."""
        lang = check_language(lang, self.languages, where="this image world")
        sc = self.scene(image_id)
        data = self.train_set if sc.split == "train" else self.test_set
        return data.captions[lang][data.ids.index(image_id)]

    def lexicon(self, lang: str) -> dict[str, str]:
        """The toy lexicon of ``lang``: concept (``"colour:red"``, ``"shape:circle"``, ``"count:2"``,
        ``"pos:top"``, ``"plural"`` ...) -> word (a copy)."""
        lang = check_language(lang, self.languages, where="this image world")
        return dict(self._lexicons[lang])

    def texts(self, include_eval_only: bool = True) -> list[str]:
        """Every caption of the training images (no test image), for tokenizer training.

        With ``include_eval_only`` the eval-only languages' captions of those images are
        included, as real encoders were pre-trained on those languages; they never appear
        in ``train``.
        """
        langs = self.languages if include_eval_only else self.train_languages
        seen: dict[str, None] = {}
        for lang in langs:
            for caps in self.train_set.captions[lang]:
                for c in caps:
                    seen.setdefault(c)
        return list(seen)

    def render(self, image_id: str) -> np.ndarray:
        """Pixels of ``image_id``: uint8 (image_size, image_size, 3)."""
        sc = self.scene(image_id)
        return render_scene(*sc.attributes, image_size=self.image_size, offset=sc.offset)

    def png_bytes(self, image_id: str) -> bytes:
        """The PNG file content of ``image_id`` (deterministic)."""
        return _png_bytes(Image.fromarray(self.render(image_id), "RGB"))

    def write_images(self, folder: str | os.PathLike) -> Path:
        """Write every image (train and test) as ``<folder>/<image id>.png``; set ``image_root``.

        Files already present with identical bytes are left alone; others are replaced
        atomically (safe with several readers). Returns the absolute folder.
        """
        root = Path(folder).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        for sc in self.scenes:
            path = root / sc.file_name
            data = self.png_bytes(sc.image_id)
            if path.is_file() and path.read_bytes() == data:
                continue
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        self.image_root = str(root)
        return root

    def describe(self) -> dict:
        """A small summary: languages, scripts, split sizes and one example."""
        first = self.scenes[0]
        return {
            "name": "hbkit image world (a TOY: generated shapes, synthetic languages labelled with real ISO codes)",
            "seed": self.seed, "image_size": self.image_size,
            "languages": {lang: {"name": LANGUAGES[lang][0], "script": script_of(lang),
                                 "role": "train" if lang in self.train_languages else "eval-only"}
                          for lang in self.languages},
            "splits": {"train": {"images": len(self.train_set.ids), "items": self.train.num_items},
                       "benchmark": {"images": len(self.test_set.ids), "queries": len(self.benchmark.queries),
                                     "candidates": len(self.benchmark.candidates)}},
            "example": {"image_id": first.image_id, "attributes": first.attributes,
                        "captions": {lang: self.captions(first.image_id, lang) for lang in self.languages}},
        }


def make_image_world(seed: int = 0, n_train_images: int = 500, n_test_images: int = 100, image_size: int = 32,
                     languages: Iterable[str] | None = None, captions_per_language: int = 2,
                     out_dir: str | os.PathLike | None = None,
                     eval_only_languages: Iterable[str] = ("el",)) -> ImageWorld:
    """Generate the TOY image world (deterministic: the same arguments give identical output).

    Args:
        seed: the world's seed (which attribute tuples, offsets, lexicons, caption templates).
        n_train_images / n_test_images: images per split (disjoint ids and attribute tuples;
            together at most :data:`N_SCENES` = 840).
        image_size: side of the square RGB images in pixels (16 to 1024).
        languages: training languages (default en, es, de, ru, ar, hi); at least 2.
        captions_per_language: captions per image and language, 1 to :data:`N_TEMPLATES`,
            each from a different template.
        out_dir: if given, the images are written there (:meth:`ImageWorld.write_images`).
        eval_only_languages: languages only in the benchmark (default el); must not overlap.
    """
    seed = check_seed(seed)
    n_train = check_size("n_train_images", n_train_images)
    n_test = check_size("n_test_images", n_test_images)
    if n_train + n_test > N_SCENES:
        raise ConfigError(f"The image world has {N_SCENES} distinct scenes; n_train_images + n_test_images = "
                          f"{n_train + n_test}. Ask for fewer images.")
    size = check_size("image_size", image_size, 16, 1024)
    k = check_size("captions_per_language", captions_per_language, 1, N_TEMPLATES)
    train_langs = check_langs(languages, DEFAULT_TRAIN_LANGUAGES, "languages")
    eval_only = check_langs(eval_only_languages, (), "eval_only_languages")
    if len(train_langs) < 2:
        raise ConfigError(f"The image world needs at least 2 training languages, got {list(train_langs)}.")
    overlap = sorted(set(train_langs) & set(eval_only))
    if overlap:
        raise ConfigError(f"{overlap} are both training and eval-only languages; remove them from one list.")
    all_langs = train_langs + eval_only

    tuples = list(itertools.product(SHAPES, COLOURS, SIZES, COUNTS, POSITIONS))
    rng = seeded_rng(seed, "image-scenes")
    rng.shuffle(tuples)
    jitter = size // 32
    scenes: list[Scene] = []
    for i, attrs in enumerate(tuples[:n_train + n_test]):
        offset = (rng.randint(-jitter, jitter), rng.randint(-jitter, jitter))
        split = "train" if i < n_train else "test"
        scenes.append(Scene(f"shapes{seed}-{i:04d}", split, *attrs, offset=offset))

    writers = {lang: _CaptionWriter(seed, lang) for lang in all_langs}
    caps = {lang: [w.captions(sc, k) for sc in scenes] for lang, w in writers.items()}

    def caption_set(split: str, langs: Sequence[str]) -> ImageCaptionSet:
        idx = [i for i, sc in enumerate(scenes) if sc.split == split]
        return ImageCaptionSet(f"image-world-{split}", tuple(scenes[i].image_id for i in idx),
                               tuple(ImageRef(scenes[i].file_name) for i in idx),
                               {lang: tuple(caps[lang][i] for i in idx) for lang in langs})

    train_set, test_set = caption_set("train", all_langs), caption_set("test", all_langs)
    world = ImageWorld(seed=seed, image_size=size, languages=all_langs, train_languages=train_langs,
                       eval_only_languages=eval_only, captions_per_language=k, scenes=tuple(scenes),
                       train_set=train_set, test_set=test_set, train=train_set.to_dataset(list(train_langs)),
                       benchmark=test_set.to_benchmark(list(all_langs)),
                       _lexicons={lang: w.lex for lang, w in writers.items()},
                       _by_id={sc.image_id: sc for sc in scenes})
    if len(set(world.train_set.ids) & set(world.test_set.ids)):
        raise DataError("Internal error: train and test images share ids.")
    if out_dir is not None:
        world.write_images(out_dir)
    return world
