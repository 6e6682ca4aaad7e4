"""Image–caption data: image ids and folders, the leak guard, and the Multi30K, XTD10, xFlickr&CO and XM3600 loaders.

Multi30K task 1 and XTD10 are read from the real caption files in ../shared/data (no images there):
placeholder images (one tiny JPEG, written under each listed name) stand in for the named files.
xFlickr&CO and XM3600 are read from small files written here in their published layouts.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hbkit.benchmark import RetrievalBenchmark
from hbkit.datasets import registry, xm3600
from hbkit.datasets.images import (ImageCaptionSet, ImageFolder, check_overlap, coco_split, extract_tar, image_key,
                                   image_keys, verify_images)
from hbkit.datasets.multi30k import download_multi30k, load_multi30k, load_multi30k_benchmark, read_multi30k
from hbkit.datasets.xflickrco import load_xflickrco, read_xflickrco
from hbkit.datasets.xm3600 import download_xm3600, load_xm3600, read_xm3600
from hbkit.datasets.xtd10 import download_xtd10, load_xtd10, read_xtd10, xtd10_image_names
from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.evaluation import IMAGE_TO_TEXT, TEXT_TO_IMAGE, TEXT_TO_TEXT, evaluate_embeddings
from hbkit.parallel import IMAGE, ImageRef, ParallelDataset, ParallelItem


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()
_FOLDERS: dict[tuple, Path] = {}


def placeholder_images(factory, label: str, names, rename=lambda n: n) -> Path:
    """A folder with one placeholder JPEG per name (``rename`` maps a listed name to a relative file path)."""
    key = (label, tuple(names))
    if key not in _FOLDERS:
        root = factory.mktemp(label)
        for n in names:
            path = root / rename(n)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(JPEG)
        _FOLDERS[key] = root
    return _FOLDERS[key]


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.rstrip("\r\n") for line in fh]


@pytest.fixture
def m30k(shared_data) -> Path:
    return shared_data / "multi30k"


def _split_names(m30k: Path, split: str) -> list[str]:
    return _lines(m30k / "task1" / "image_splits" / f"{split}.txt")


# --------------------------------------------------------------------------- image ids and folders

def test_image_key_normalises_coco_and_flickr_names():
    coco = ["COCO_train2014_000000123456.jpg", "000000123456.jpg", "train2014/COCO_train2014_000000123456.JPG",
            "COCO_val2014_000000123456.jpg#657409", r"C:\coco\COCO_train2014_000000123456.jpeg", "000000123456"]
    assert {image_key(n) for n in coco} == {"coco:123456"}
    assert image_key(ImageRef("/data/coco/val2014/COCO_val2014_000000000042.jpg")) == "coco:42"
    assert image_key("1000092795.jpg") == image_key("flickr30k-images/1000092795") == "flickr:1000092795"
    assert image_key("22439193117_4183a49ec2.jpg") == image_key("22439193117_4183a49ec2_b.jpg") == "flickr:22439193117"
    assert image_key("000411001ff7dd4f.jpg") == image_key("000411001FF7DD4F") == "000411001ff7dd4f"  # Open Images
    assert image_key("0123.png") == "0123"  # a leading zero is not a Flickr photo id
    assert image_key("COCO_train2014_000000000139.jpg") != image_key("139.jpg")  # COCO 139 is not Flickr 139
    assert coco_split("COCO_train2014_000000061844.jpg") == "train2014"
    assert coco_split("COCO_val2014_000000061844.jpg#1") == "val2014"
    assert coco_split("000000061844.jpg") is None and coco_split("1000092795.jpg") is None
    with pytest.raises(DataError, match="Empty image name"):
        image_key("images/")


def test_image_folder_finds_by_name_subfolder_and_key(tmp_path):
    (tmp_path / "train2014").mkdir()
    (tmp_path / "train2017").mkdir()
    (tmp_path / "a.jpg").write_bytes(JPEG)
    (tmp_path / "train2014" / "COCO_train2014_000000000009.jpg").write_bytes(JPEG)
    (tmp_path / "train2017" / "000000000025.jpg").write_bytes(JPEG)
    (tmp_path / "notes.txt").write_text("not an image")
    folder = ImageFolder(tmp_path, how_to_get="Get them from the moon")
    found = folder.resolve(["a.jpg", "train2014/COCO_train2014_000000000009.jpg", "COCO_train2014_000000000009.jpg",
                            "COCO_train2014_000000000025.jpg", "COCO_val2014_000000000025.jpg#77"])
    assert found == [tmp_path / "a.jpg", tmp_path / "train2014" / "COCO_train2014_000000000009.jpg",
                     tmp_path / "train2014" / "COCO_train2014_000000000009.jpg",
                     tmp_path / "train2017" / "000000000025.jpg", tmp_path / "train2017" / "000000000025.jpg"]
    assert set(folder.index()) == {"a", "coco:9", "coco:25"}
    assert folder.find(str(tmp_path / "train2017" / "000000000025.jpg")) == tmp_path / "train2017" / "000000000025.jpg"
    names = ["a.jpg"] + [f"missing{i}.jpg" for i in range(7)]
    with pytest.raises(DataError) as err:
        folder.resolve(names, dataset="toy")
    msg = str(err.value)
    assert "toy: 7 of its 8 images are missing from" in msg and str(tmp_path) in msg
    assert "'missing0.jpg', 'missing1.jpg', 'missing2.jpg', 'missing3.jpg', 'missing4.jpg', ..." in msg
    assert "'missing5.jpg'" not in msg and "Get them from the moon" in msg and "images=" in msg
    with pytest.raises(DataError, match=r"Image folder not found: .*nowhere.*Get them from the moon"):
        ImageFolder(tmp_path / "nowhere", how_to_get="Get them from the moon")
    # a second folder is searched after the first
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.png").write_bytes(JPEG)
    assert ImageFolder([tmp_path / "train2014", other]).resolve(["b.png"]) == [other / "b.png"]


def test_verify_images_names_the_corrupt_file(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(JPEG)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    assert verify_images([good, ImageRef(str(good))]) == 2
    with pytest.raises(DataError, match=r"toy: the image .*bad\.jpg cannot be read .*corrupt.*Download it again"):
        verify_images([good, bad], dataset="toy")


# --------------------------------------------------------------------------- the leak guard

def _captions(names, lang="en") -> ParallelDataset:
    return ParallelDataset([ParallelItem(n, lang, f"caption of {n}", ImageRef(f"/imgs/{n}")) for n in names], "train")


def test_check_overlap_refuses_shared_images_unless_allowed():
    train = _captions(["000000000001.jpg", "000000000002.jpg", "1000092795.jpg"])
    evaluation = ["COCO_train2014_000000000002.jpg", "COCO_val2014_000000000007.jpg", "flickr30k/1000092795.jpg",
                  "000411001ff7dd4f.jpg"]
    with pytest.raises(DataError) as err:
        check_overlap(train, evaluation, eval_name="toy-eval")
    msg = str(err.value)
    assert "2 of the 4 images of the evaluation set 'toy-eval' are also in the training set 'train'" in msg
    assert "coco:2, flickr:1000092795" in msg and "allow_overlap=True" in msg and "not zero-shot" in msg
    record = check_overlap(train, evaluation, eval_name="toy-eval", allow_overlap=True)
    assert record == {"train": "train", "evaluation": "toy-eval", "train_images": 3, "eval_images": 4,
                      "overlap": 2, "allow_overlap": True, "allowed": True, "examples": ["coco:2", "flickr:1000092795"]}
    clean = check_overlap(["000000000003.jpg"], evaluation, train_name="other", eval_name="toy-eval")
    assert clean["overlap"] == 0 and clean["allowed"] is False and clean["examples"] == []
    with pytest.raises(ConfigError, match="holds text pairs"):
        check_overlap(ParallelDataset([ParallelItem("g", "en", "q", "p")], "text"), evaluation)
    with pytest.raises(ConfigError, match="not a single name"):
        check_overlap("000000000001.jpg", evaluation)


def test_multi30k_splits_do_not_share_images_and_xtd10_holds_coco_train(shared_data, m30k):
    train, val, test = (_split_names(m30k, s) for s in ("train", "val", "test_2016_flickr"))
    assert check_overlap(train, test, train_name="multi30k-train", eval_name="multi30k-test_2016")["overlap"] == 0
    assert check_overlap(train, val, train_name="multi30k-train", eval_name="multi30k-val")["overlap"] == 0
    xtd = xtd10_image_names(shared_data / "xtd10")
    coco_train = [n for n in xtd if coco_split(n) == "train2014"]
    assert len(xtd) == 1000 and len(coco_train) == 800 and sum(coco_split(n) == "val2014" for n in xtd) == 200
    # a training set of COCO train images under their 2017 names (000000xxxxxx.jpg)
    coco_train_2017 = [f"{int(n[-16:-4]):012d}.jpg" for n in coco_train]
    with pytest.raises(DataError, match=r"800 of the 1000 images of the evaluation set 'xtd10' are also in the "
                                        r"training set 'coco-train2014'"):
        check_overlap(coco_train_2017, xtd, train_name="coco-train2014", eval_name="xtd10")
    # Multi30K's COCO test set shares 3 images with XTD10
    mscoco = _split_names(m30k, "test_2017_mscoco")
    record = check_overlap(mscoco, xtd, train_name="multi30k-test_2017_mscoco", eval_name="xtd10", allow_overlap=True)
    assert (record["overlap"], record["train_images"], record["eval_images"]) == (3, 461, 1000)


# --------------------------------------------------------------------------- Multi30K (real caption files)

def test_multi30k_test_2016_benchmark_has_both_directions(m30k, tmp_path_factory):
    names = _split_names(m30k, "test_2016_flickr")
    images = placeholder_images(tmp_path_factory, "flickr-test2016", names)
    bench = load_multi30k_benchmark(m30k, "test_2016_flickr", images=images)
    assert bench.name == "multi30k-test_2016_flickr" and isinstance(bench, RetrievalBenchmark)
    img_q = [q for q in bench.queries if q.modality == IMAGE]
    img_c = [c for c in bench.candidates if c.modality == IMAGE]
    assert len(img_q) == len(img_c) == 1000 and bench.query_langs == bench.candidate_langs == ["cs", "de", "en", "fr"]
    for lang in ("cs", "de", "en", "fr"):
        assert len(bench.queries_in(lang)) == len(bench.candidates_in(lang)) == 1000
    assert len(bench.queries) == len(bench.candidates) == 5000
    q0 = bench.queries[0]
    assert (q0.qid, q0.xid, q0.lang, q0.text) == ("image:1007129816.jpg", "1007129816.jpg", None, "")
    assert q0.image == ImageRef(str(images / "1007129816.jpg"))
    de0 = next(q for q in bench.queries if q.qid == "de:1007129816.jpg:0")
    assert de0.text == "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt." and de0.xid == "1007129816.jpg"
    assert bench.queries[1000 + 999].text == _lines(m30k / "task1/raw/test_2016_flickr.cs.gz")[999]
    # relevance: an image and its four captions are relevant to each other
    cids = [c.cid for c in bench.candidates]
    want = {"image:1007129816.jpg"} | {f"{lang}:1007129816.jpg:0" for lang in ("cs", "de", "en", "fr")}
    assert {cids[j] for j in bench.relevant[0]} == want
    assert {cids[j] for j in bench.relevant[bench.queries.index(de0)]} == want
    assert all(len(r) == 5 for r in bench.relevant)


def test_multi30k_benchmark_through_the_evaluator(m30k, tmp_path_factory):
    names = _split_names(m30k, "test_2016_flickr")
    bench = load_multi30k_benchmark(m30k, "test_2016_flickr", images=placeholder_images(
        tmp_path_factory, "flickr-test2016", names), languages=["en", "de"], max_images=20)
    assert len(bench.queries) == len(bench.candidates) == 60
    # image i and its captions embed as basis vector i: every relevant item scores 1, every other 0
    index = {f"{n}": i for i, n in enumerate(names[:20])}
    q = np.eye(20, dtype=np.float32)[[index[x.xid] for x in bench.queries]]
    c = np.eye(20, dtype=np.float32)[[index[x.xids[0]] for x in bench.candidates]]
    df = evaluate_embeddings(bench, q, c)
    assert set(df.direction) == {TEXT_TO_TEXT, TEXT_TO_IMAGE, IMAGE_TO_TEXT}
    rows = df[df.direction != TEXT_TO_TEXT].set_index(["direction", "setting", "query_lang", "candidate_lang",
                                                       "metric"])
    assert set(rows.index.droplevel("metric")) == {
        (TEXT_TO_IMAGE, "monolingual", "de", "-"), (TEXT_TO_IMAGE, "monolingual", "en", "-"),
        (IMAGE_TO_TEXT, "monolingual", "-", "de"), (IMAGE_TO_TEXT, "monolingual", "-", "en"),
        (IMAGE_TO_TEXT, "multilingual", "-", "all")}
    assert set(rows.n_queries) == {20}
    for key in [(TEXT_TO_IMAGE, "monolingual", "de", "-"), (IMAGE_TO_TEXT, "monolingual", "-", "en")]:
        assert rows.loc[key + ("hit@1",), "value"] == 1.0
    # pooled: the image's en and de captions tie at score 1, so each is ranked 2nd (pessimistic ties)
    multi = (IMAGE_TO_TEXT, "multilingual", "-", "all")
    assert rows.loc[multi + ("hit@1",), "value"] == 0.0 and rows.loc[multi + ("hit@5",), "value"] == 1.0
    assert rows.loc[multi + ("mAP",), "value"] == 1.0 and rows.loc[multi + ("rank_distance",), "value"] == 0.0


def test_multi30k_training_splits(m30k, tmp_path_factory):
    val_names = _split_names(m30k, "val")
    ds = load_multi30k(m30k, "val", images=placeholder_images(tmp_path_factory, "flickr-val", val_names))
    assert ds.name == "multi30k-val" and ds.modality == IMAGE and not ds.passage_has_language
    assert len(ds) == 1014 and ds.num_items == 4 * 1014 and ds.languages == ["cs", "de", "en", "fr"]
    assert ds.groups[:2] == ["1018148011.jpg", "1029450589.jpg"] and ds.max_items_per_language == 1
    assert Path(ds.image(0).key).is_file() and Path(ds.image(0).key).name == "1018148011.jpg"
    assert ds.item(1013, "fr").query == _lines(m30k / "task1/raw/val.fr.gz")[1013]
    train_names = _split_names(m30k, "train")[:300]
    train = load_multi30k(m30k, "train", languages=["DE", "ces"], max_images=300,
                          images=placeholder_images(tmp_path_factory, "flickr-train300", train_names))
    assert len(train) == 300 and train.num_items == 600 and train.languages == ["cs", "de"]
    assert train.item(0, "de").query == _lines(m30k / "task1/raw/train.de.gz")[0]
    assert train.groups[0] == "1000092795.jpg"


def test_multi30k_mscoco_split_finds_coco_images_by_id(m30k, tmp_path_factory):
    names = _split_names(m30k, "test_2017_mscoco")
    assert names[0] == "COCO_train2014_000000117071.jpg#367178"
    # the folder holds COCO 2017 names (000000117071.jpg): found by image id
    coco = placeholder_images(tmp_path_factory, "coco2017", names,
                              rename=lambda n: f"{'train' if 'train' in n else 'val'}2017/{n.split('#')[0][-16:]}")
    s = read_multi30k(m30k, "test_2017_mscoco", images=coco, verify_images=True)
    assert len(s.ids) == 461 and s.languages == ["de", "en", "fr"] and s.num_captions() == 3 * 461
    assert s.ids[0] == "COCO_train2014_000000117071.jpg"
    assert Path(s.images[0].key) == coco / "train2017/000000117071.jpg"
    with pytest.raises(UnknownLanguageError, match=r"'cs' \(Czech\) is not available there. Use one of: de, en, fr"):
        read_multi30k(m30k, "test_2017_mscoco", languages=["cs"], images=coco)


def test_multi30k_bad_input(m30k, tmp_path, tmp_path_factory):
    with pytest.raises(ConfigError, match="no split 'test_2016'. Use one of: train, val, test_2016_flickr"):
        read_multi30k(m30k, "test_2016")
    with pytest.raises(ConfigError, match="task 3"):
        read_multi30k(m30k, "train", task=3)
    with pytest.raises(UnknownLanguageError, match="Did you mean 'cs'"):
        read_multi30k(m30k, "val", languages=["cz"])
    with pytest.raises(DataError, match="No Multi30K task 1 files under"):
        read_multi30k(tmp_path, "val")
    with pytest.raises(DataError, match=r"Multi30K val: its images cannot be downloaded automatically. Flickr30K"):
        read_multi30k(m30k, "val", images="download")
    # images missing: the count, the first names, where to get them
    with pytest.raises(DataError, match=r"multi30k-val: 1014 of its 1014 images are missing from .*'1018148011\.jpg'.*"
                                        r"Flickr30K images are distributed on request"):
        read_multi30k(m30k, "val", images=tmp_path)
    # a copy of test_2016 with a caption file one line short, then with an empty caption
    copy = tmp_path / "m30k" / "task1"
    (copy / "raw").mkdir(parents=True)
    (copy / "image_splits").mkdir()
    shutil.copy(m30k / "task1/image_splits/test_2016_flickr.txt", copy / "image_splits")
    lines = _lines(m30k / "task1/raw/test_2016_flickr.en.gz")
    (copy / "raw" / "test_2016_flickr.en").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    images = placeholder_images(tmp_path_factory, "flickr-test2016", _split_names(m30k, "test_2016_flickr"))
    with pytest.raises(DataError, match=r"test_2016_flickr\.en has 999 lines but its image list "
                                        r".*test_2016_flickr\.txt has 1000: line i"):
        read_multi30k(copy.parent, "test_2016_flickr", languages=["en"], images=images)
    lines[4] = "  "
    (copy / "raw" / "test_2016_flickr.en").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test_2016_flickr\.en, line 5: empty caption"):
        read_multi30k(copy.parent, "test_2016_flickr", languages=["en"], images=images)
    # a corrupt image is found on demand only
    bad = tmp_path / "bad-images"
    shutil.copytree(images, bad)
    (bad / "1007129816.jpg").write_bytes(b"garbage")
    assert len(read_multi30k(m30k, "test_2016_flickr", languages="en", images=bad, max_images=3).ids) == 3
    with pytest.raises(DataError, match=r"the image .*1007129816\.jpg cannot be read"):
        read_multi30k(m30k, "test_2016_flickr", languages="en", images=bad, max_images=3, verify_images=True)


def test_multi30k_task2_five_captions_per_image(tmp_path):
    task2 = tmp_path / "data" / "task2"
    (task2 / "raw").mkdir(parents=True)
    (task2 / "image_splits").mkdir()
    (task2 / "image_splits" / "val_images.txt").write_text("1.jpg\n2.jpg\n3.jpg\n")
    for n in range(1, 6):
        for lang in ("en", "de"):
            with gzip.open(task2 / "raw" / f"val.{n}.{lang}.gz", "wt", encoding="utf-8") as fh:
                fh.write("".join(f"{lang} caption {n} of image {i}\n" for i in (1, 2, 3)))
    (tmp_path / "images").mkdir()
    for i in (1, 2, 3):
        (tmp_path / "images" / f"{i}.jpg").write_bytes(JPEG)
    ds = load_multi30k(tmp_path / "data", "val", task=2, images=tmp_path / "images")
    assert ds.name == "multi30k-task2-val" and len(ds) == 3 and ds.num_items == 30 and ds.max_items_per_language == 5
    assert [ds.item(1, "de", k).query for k in range(5)] == [f"de caption {n} of image 2" for n in range(1, 6)]
    bench = read_multi30k(tmp_path / "data", "val", task=2, images=tmp_path / "images").to_benchmark(["en"])
    assert len(bench.queries) == 3 + 15 and len(bench.relevant[0]) == 1 + 5
    with pytest.raises(UnknownLanguageError, match="'fr'"):
        read_multi30k(tmp_path / "data", "val", task=2, languages=["fr"], images=tmp_path / "images")


# --------------------------------------------------------------------------- XTD10 (real caption files)

def _xtd10_layout(n: str) -> str:
    """train2014 images under their 2014 names in train2014/, val2014 images under their 2017 names."""
    return f"train2014/{n}" if coco_split(n) == "train2014" else f"val2017/{n[-16:]}"


def test_xtd10_real_captions(shared_data, tmp_path_factory):
    xtd = shared_data / "xtd10"
    names = xtd10_image_names(xtd)
    images = placeholder_images(tmp_path_factory, "coco-xtd10", names, rename=_xtd10_layout)
    s = read_xtd10(xtd, images=images)
    assert s.name == "xtd10" and len(s.ids) == 1000 and s.ids[0] == "COCO_train2014_000000061844.jpg"
    assert s.languages == ["de", "en", "es", "fr", "it", "ja", "ko", "pl", "ru", "tr", "zh"]
    assert all(s.num_captions(lang) == 1000 for lang in s.languages)
    assert s.captions["ja"][0] == ("黒いユニフォームのランナーがホームに帰ってきた",)  # STAIR/test_1kcaptions_jp.txt
    cat = "Eine Katze spielt mit seinen Pfoten an einer Computer-Maus auf einem Schreibtisch ."
    assert s.captions["de"][1] == (cat,)
    es = _lines(xtd / "XTD10/test_1kcaptions_es.txt")  # CRLF, no final newline
    assert s.captions["es"][999] == (es[999].strip(),) and not any("\r" in c[0] for c in s.captions["es"])
    assert sum(coco_split(n) == "train2014" for n in s.ids) == 800
    assert Path(s.images[0].key) == images / "train2014" / "COCO_train2014_000000061844.jpg"
    val = next(i for i, n in enumerate(s.ids) if coco_split(n) == "val2014")
    assert Path(s.images[val].key).parent == images / "val2017"
    bench = s.to_benchmark(["en", "ja"])
    assert len(bench.queries) == len(bench.candidates) == 3000 and bench.query_langs == ["en", "ja"]
    assert len(image_keys(bench)) == 1000 and "coco:61844" in image_keys(bench)
    with pytest.raises(UnknownLanguageError, match=r"'jp'.*Did you mean 'ja'"):
        load_xtd10(xtd, languages=["jp"], images=images)
    with pytest.raises(DataError, match=r"xtd10: 1000 of its 1000 images are missing.*train2014\.zip"):
        read_xtd10(xtd, languages=["en"], images=tmp_path_factory.mktemp("empty"))


def test_xtd10_line_count_mismatch(shared_data, tmp_path, tmp_path_factory):
    xtd = shared_data / "xtd10"
    copy = tmp_path / "xtd10"
    shutil.copytree(xtd, copy)
    lines = _lines(copy / "XTD10/test_1kcaptions_ko.txt")
    (copy / "XTD10/test_1kcaptions_ko.txt").write_text("\n".join(lines + ["한 줄 더"]), encoding="utf-8")
    images = placeholder_images(tmp_path_factory, "coco-xtd10", xtd10_image_names(xtd), rename=_xtd10_layout)
    with pytest.raises(DataError, match=r"test_1kcaptions_ko\.txt has 1001 lines but the image list .* has 1000"):
        read_xtd10(copy, languages=["ko"], images=images)
    assert len(read_xtd10(copy / "XTD10", languages=["en"], images=images, max_images=10).ids) == 10


def test_xtd10_from_hbkit_data_folders(shared_data, tmp_path, tmp_path_factory, monkeypatch):
    names = xtd10_image_names(shared_data / "xtd10")
    images = placeholder_images(tmp_path_factory, "coco-xtd10", names, rename=_xtd10_layout)
    (tmp_path / "xtd10").symlink_to(shared_data / "xtd10")
    (tmp_path / "coco").symlink_to(images)
    monkeypatch.setenv("HBKIT_DATA", str(tmp_path))
    bench = load_xtd10(languages=["tr"], max_images=5)
    tr = _lines(shared_data / "xtd10/XTD10/test_1kcaptions_tr.txt")
    assert len(bench.queries) == 10 and bench.queries[5].text == tr[0].strip()
    (tmp_path / "coco").unlink()
    with pytest.raises(DataError, match=r"XTD10 needs its images: pass images=<folder> \(or put them in "
                                        r"\$HBKIT_DATA/coco\)"):
        load_xtd10(languages=["tr"], max_images=5)


# --------------------------------------------------------------------------- downloads (file:// mirrors, no network)

def test_downloads_are_checksummed(shared_data, tmp_path):
    folder = download_xtd10(tmp_path / "cache", languages=["ja", "en"], base_url=(shared_data / "xtd10").as_uri())
    assert folder == tmp_path / "cache" / "xtd10"
    jp = "STAIR/test_1kcaptions_jp.txt"
    assert (folder / jp).read_bytes() == (shared_data / "xtd10" / jp).read_bytes()
    assert not (folder / "MIC").exists()
    m = download_multi30k(1, ["test_2016_flickr"], ["de"], tmp_path / "cache",
                          base_url=(shared_data / "multi30k").as_uri())
    assert sorted(p.relative_to(m).as_posix() for p in m.rglob("*") if p.is_file()) == [
        "task1/image_splits/test_2016_flickr.txt", "task1/raw/test_2016_flickr.de.gz"]
    # a mirror serving other bytes is refused
    bad = tmp_path / "bad-mirror"
    shutil.copytree(shared_data / "xtd10", bad)
    (bad / "XTD10/test_1kcaptions_en.txt").write_text("tampered\n")
    with pytest.raises(DataError, match="Checksum mismatch"):
        download_xtd10(tmp_path / "cache2", languages=["en"], base_url=bad.as_uri())


# --------------------------------------------------------------------------- xFlickr&CO (small files, real layout)

def _write_xflickrco(root: Path) -> None:
    rows = {
        "en": [{"sentences": ["A man in an orange hat."], "id": "1007129816", "img_path": "1007129816.jpg"},
               {"sentences": ["A dog runs on grass.", "A terrier on a lawn."], "id": "1009434119",
                "img_path": "1009434119.jpg"},
               {"sentences": ["A man on a moped."], "id": 391895, "img_path": "COCO_val2014_000000391895.jpg"}],
        "de": [{"sentences": ["Der Mann trägt eine orange Wollmütze."], "id": "1007129816",
                "img_path": "1007129816.jpg"},
               {"sentences": ["Ein Mann auf einem Moped."], "id": 391895, "img_path": "COCO_val2014_000000391895.jpg"}],
        "ja": [{"sentences": ["オレンジ色の帽子の男性。"], "id": "1007129816", "img_path": "1007129816.jpg"}],
    }
    for lang, items in rows.items():
        (root / "annotations" / lang).mkdir(parents=True)
        (root / "annotations" / lang / "test.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")


def test_xflickrco_layout(tmp_path):
    root = tmp_path / "xFlickrCO"
    _write_xflickrco(root)
    flickr, coco = tmp_path / "flickr30k-images", tmp_path / "coco" / "val2014"
    flickr.mkdir()
    coco.mkdir(parents=True)
    for n in ("1007129816.jpg", "1009434119.jpg"):
        (flickr / n).write_bytes(JPEG)
    (coco / "COCO_val2014_000000391895.jpg").write_bytes(JPEG)
    s = read_xflickrco(root, languages=["en", "de", "ja"], images=[flickr, tmp_path / "coco"])
    assert s.ids == ("1007129816.jpg", "1009434119.jpg", "COCO_val2014_000000391895.jpg")
    assert s.captions["en"][1] == ("A dog runs on grass.", "A terrier on a lawn.")
    assert s.captions["de"] == (("Der Mann trägt eine orange Wollmütze.",), (), ("Ein Mann auf einem Moped.",))
    assert s.captions["ja"] == (("オレンジ色の帽子の男性。",), (), ())
    assert Path(s.images[2].key) == coco / "COCO_val2014_000000391895.jpg"
    bench = load_xflickrco(root / "annotations", languages=["en", "de", "ja"], images=[flickr, tmp_path / "coco"])
    assert len(bench.queries) == 3 + 4 + 2 + 1 and len(bench.candidates) == 10
    cids = [c.cid for c in bench.candidates]
    assert {cids[j] for j in bench.relevant[0]} == {"image:1007129816.jpg", "en:1007129816.jpg:0",
                                                    "de:1007129816.jpg:0", "ja:1007129816.jpg:0"}
    # xFlickr&CO's Flickr images are Multi30K test 2016 images
    record = check_overlap(["1007129816.jpg", "1018148011.jpg"], bench, train_name="m30k", allow_overlap=True)
    assert record["overlap"] == 1 and record["evaluation"] == "xflickrco"
    with pytest.raises(UnknownLanguageError, match="Use one of: de, en, es, id, ja, ru, tr, zh"):
        read_xflickrco(root, languages=["fr"], images=flickr)
    with pytest.raises(DataError, match=r"xFlickr&CO annotations for 'es' not found"):
        read_xflickrco(root, languages=["es"], images=flickr)
    with pytest.raises(DataError, match=r"1 of its 3 images are missing.*COCO_val2014_000000391895"):
        read_xflickrco(root, languages=["en"], images=flickr)
    (root / "annotations" / "ja" / "test.jsonl").write_text('{"sentences": [], "id": "1", "img_path": "1.jpg"}\n')
    with pytest.raises(DataError, match=r"ja/test\.jsonl, line 1: 'sentences' must be a non-empty list"):
        read_xflickrco(root, languages=["ja"], images=flickr)
    (root / "annotations" / "ja" / "test.jsonl").write_text('{"sentences": ["x"], "id": "1"\n')
    with pytest.raises(DataError, match=r"line 1: not valid JSON"):
        read_xflickrco(root, languages=["ja"], images=flickr)
    with pytest.raises(DataError, match="No xFlickr&CO annotations under"):
        read_xflickrco(tmp_path / "nowhere")


# --------------------------------------------------------------------------- XM3600 (small file, documented layout)

XM_ROWS = [
    {"image/key": "000411001ff7dd4f",
     "en": {"caption": ["A red bus on a street.", "A bus in the city."], "caption/tokenized": ["a red bus ."]},
     "de": {"caption": ["Ein roter Bus."]}, "iw": {"caption": ["אוטובוס אדום.", "אוטובוס."]}},
    {"image/key": "0005bde3a28d9f39", "en": {"caption": ["Two cats."]}, "de": {"caption": ["Zwei Katzen.", "Katzen."]},
     "iw": {"caption": ["שני חתולים."]}},
]


def _write_xm3600(root: Path, rows=XM_ROWS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "captions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    (root / "images").mkdir(exist_ok=True)
    for r in rows:
        if "image/key" in r:
            (root / "images" / f"{r['image/key']}.jpg").write_bytes(JPEG)
    return root


def test_xm3600_all_captions_or_first_only(tmp_path):
    root = _write_xm3600(tmp_path / "xm3600")
    s = read_xm3600(root, languages=["en", "de", "he"])  # "iw" in the file is Hebrew, stored as "he"
    assert s.ids == ("000411001ff7dd4f", "0005bde3a28d9f39") and s.name == "xm3600"
    assert s.captions["en"] == (("A red bus on a street.", "A bus in the city."), ("Two cats.",))
    assert s.captions["he"][0] == ("אוטובוס אדום.", "אוטובוס.") and s.num_captions() == 9
    assert Path(s.images[1].key) == root / "images" / "0005bde3a28d9f39.jpg"
    ds = s.to_dataset()
    assert len(ds) == 2 and ds.num_items == 9 and ds.count(0, "en") == 2 and ds.count(1, "de") == 2
    first = load_xm3600(root / "captions.jsonl", languages=["en", "de", "he"], first_caption_only=True)
    assert first.name == "xm3600-first" and len(first.queries) == 2 + 6
    assert [q.text for q in first.queries if q.lang == "de"] == ["Ein roter Bus.", "Zwei Katzen."]
    bench = load_xm3600(root, languages=["en"])
    assert [q.qid for q in bench.queries] == ["image:000411001ff7dd4f", "image:0005bde3a28d9f39",
                                              "en:000411001ff7dd4f:0", "en:000411001ff7dd4f:1", "en:0005bde3a28d9f39:0"]
    assert [len(r) for r in bench.relevant] == [3, 2, 3, 3, 2]
    with pytest.raises(UnknownLanguageError, match=r"has no captions in \['fr'\]. Available: \['de', 'en', 'he'\]"):
        read_xm3600(root, languages=["fr"])
    with pytest.raises(UnknownLanguageError, match="xx"):
        read_xm3600(root, languages=["xx"])
    (root / "images" / "0005bde3a28d9f39.jpg").unlink()
    with pytest.raises(DataError, match=r"xm3600: 1 of its 2 images are missing.*'0005bde3a28d9f39\.jpg'.*images\.tgz"):
        read_xm3600(root, languages=["en"])


def test_xm3600_bad_lines(tmp_path):
    root = _write_xm3600(tmp_path / "a", [{"en": {"caption": ["x"]}}])
    with pytest.raises(DataError, match=r"line 1: no 'image/key' string"):
        read_xm3600(root, languages=["en"])
    root = _write_xm3600(tmp_path / "b", [{"image/key": "k1", "en": ["x"]}])
    with pytest.raises(DataError, match=r"line 1: the 'en' entry must be an object with a 'caption' list"):
        read_xm3600(root, languages=["en"])
    root = _write_xm3600(tmp_path / "c", [XM_ROWS[0], XM_ROWS[0]])
    with pytest.raises(DataError, match="appears on several lines"):
        read_xm3600(root, languages=["en"])


def test_extract_tar_and_xm3600_download_from_local_archives(tmp_path, monkeypatch):
    src = _write_xm3600(tmp_path / "src")
    with zipfile.ZipFile(tmp_path / "captions.zip", "w") as zf:
        zf.write(src / "captions.jsonl", "captions.jsonl")
    with tarfile.open(tmp_path / "images.tgz", "w:gz") as tf:
        for p in sorted((src / "images").iterdir()):
            tf.add(p, p.name)
    folder = download_xm3600(tmp_path / "cache", images=True, captions_url=(tmp_path / "captions.zip").as_uri(),
                             images_url=(tmp_path / "images.tgz").as_uri())
    assert (folder / "captions" / "captions.jsonl").is_file()
    assert sorted(p.name for p in (folder / "images").glob("*.jpg")) == ["000411001ff7dd4f.jpg", "0005bde3a28d9f39.jpg"]
    s = read_xm3600(folder, languages=["de"])  # captions/captions.jsonl, images/ beside it
    assert Path(s.images[0].key) == folder / "images" / "000411001ff7dd4f.jpg"
    assert extract_tar(tmp_path / "images.tgz", folder / "images") == folder / "images"  # already done: no-op
    # images="download" fetches images.tgz into the cache
    monkeypatch.setenv("HBKIT_CACHE", str(tmp_path / "cache3"))
    monkeypatch.setattr(xm3600, "XM3600_IMAGES_URL", (tmp_path / "images.tgz").as_uri())
    s = read_xm3600(src / "captions.jsonl", languages=["en"], images="download")
    assert Path(s.images[1].key) == tmp_path / "cache3" / "xm3600" / "images" / "0005bde3a28d9f39.jpg"
    with tarfile.open(tmp_path / "evil.tar", "w") as tf:
        info = tarfile.TarInfo("../escape.jpg")
        info.size = len(JPEG)
        tf.addfile(info, io.BytesIO(JPEG))
    with pytest.raises(DataError, match="unsafe member '../escape.jpg'"):
        extract_tar(tmp_path / "evil.tar", tmp_path / "out")
    (tmp_path / "cut.tgz").write_bytes((tmp_path / "images.tgz").read_bytes()[:40])
    with pytest.raises(DataError, match="not a complete tar archive"):
        extract_tar(tmp_path / "cut.tgz", tmp_path / "out2")


# --------------------------------------------------------------------------- registry

def test_registry_kinds(shared_data, m30k, tmp_path_factory, monkeypatch):
    assert {"multi30k"} <= set(registry.TRAINING) and {"multi30k", "xtd10", "xflickrco", "xm3600"} <= set(
        registry.BENCHMARKS)
    val = placeholder_images(tmp_path_factory, "flickr-val", _split_names(m30k, "val"))
    monkeypatch.setenv("M30K_IMAGES", str(val))
    ds = registry.load_training({"kind": "multi30k", "split": "val", "languages": ["en", "fr"], "path": str(m30k),
                                 "images": "$M30K_IMAGES", "max_images": 50})
    assert isinstance(ds, ParallelDataset) and len(ds) == 50 and ds.languages == ["en", "fr"]
    test_images = placeholder_images(tmp_path_factory, "flickr-test2016", _split_names(m30k, "test_2016_flickr"))
    bench = registry.load_benchmark({"kind": "multi30k", "path": str(m30k), "images": [str(test_images)],
                                     "languages": ["cs"], "max_images": 7})
    assert bench.name == "multi30k-test_2016_flickr" and len(bench.queries) == 14
    xtd_images = placeholder_images(tmp_path_factory, "coco-xtd10", xtd10_image_names(shared_data / "xtd10"),
                                    rename=_xtd10_layout)
    xtd = registry.load_benchmark({"kind": "xtd10", "path": str(shared_data / "xtd10"), "images": str(xtd_images),
                                   "languages": ["zh", "ko"], "max_images": 4, "verify_images": True})
    assert xtd.name == "xtd10" and xtd.query_langs == ["ko", "zh"] and len(xtd.queries) == 12
    xm = _write_xm3600(tmp_path_factory.mktemp("xm"))
    first = registry.load_benchmark({"kind": "xm3600", "path": str(xm), "languages": ["de"],
                                     "first_caption_only": True})
    assert [q.text for q in first.queries if q.lang] == ["Ein roter Bus.", "Zwei Katzen."]
    root = tmp_path_factory.mktemp("xfc")
    _write_xflickrco(root)
    for n in ("1007129816.jpg", "1009434119.jpg", "COCO_val2014_000000391895.jpg"):
        (root / n).write_bytes(JPEG)
    xfc = registry.load_benchmark({"kind": "xflickrco", "path": str(root), "images": str(root), "languages": ["de"]})
    assert xfc.name == "xflickrco" and len(xfc.queries) == 2 + 2  # the two images with a German caption


def test_image_caption_set_checks():
    ref = ImageRef("/x/1.jpg")
    with pytest.raises(DataError, match="image ids repeat"):
        ImageCaptionSet("toy", ("1", "1"), (ref, ref), {})
    with pytest.raises(DataError, match="2 caption lists in 'en' for 1 images"):
        ImageCaptionSet("toy", ("1",), (ref,), {"en": ((), ())})
    s = ImageCaptionSet("toy", ("1",), (ref,), {"en": (("a cat",),), "de": ((),)})
    assert s.languages == ["en"] and s.num_captions("de") == 0
    with pytest.raises(UnknownLanguageError, match=r"'de' \(German\) is not available there. Use one of: en"):
        s.to_dataset(["de"])
