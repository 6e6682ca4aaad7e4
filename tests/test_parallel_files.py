"""hbkit.datasets.files: image–caption files, several rows per group and language, language codes
normalised on reading, and encoding errors located by line and byte offset."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hbkit.datasets.files import IMAGE_COLUMNS, read_parallel_file, write_parallel_file
from hbkit.errors import DataError, UnknownLanguageError
from hbkit.parallel import IMAGE, ImageRef, ParallelDataset, ParallelItem

CAPTIONS = [
    ParallelItem("coco:139", "en", "A cat on a sofa.", ImageRef("images/000139.jpg")),
    ParallelItem("coco:139", "en", 'A "grey" cat, sleeping.\tTab inside.', ImageRef("images/000139.jpg")),
    ParallelItem("coco:139", "de", "Eine Katze auf dem Sofa.", ImageRef("images/000139.jpg")),
    ParallelItem("coco:285", "en", "A bear in the grass.", ImageRef("images/000285 copy.jpg")),
    ParallelItem("coco:285", "ja", "草むらの熊。", ImageRef("images/000285 copy.jpg")),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".csv.gz", ".tsv.gz",
                                    ".jsonl.gz"])
def test_image_caption_round_trip_every_format(tmp_path, suffix):
    ds = ParallelDataset(CAPTIONS, name="caps")
    assert ds.modality == IMAGE and not ds.passage_has_language
    path = write_parallel_file(ds, tmp_path / f"captions{suffix}")
    back = read_parallel_file(path)
    assert back.items() == CAPTIONS
    assert back.modality == IMAGE and back.passage_has_language is False
    assert back.groups == ["coco:139", "coco:285"] and back.languages == ["de", "en", "ja"]
    assert back.count(0, "en") == 2 and back.image(1) == ImageRef("images/000285 copy.jpg")
    if suffix in (".csv", ".tsv"):
        header = path.read_text(encoding="utf-8").splitlines()[0]
        assert header == ("," if suffix == ".csv" else "\t").join(IMAGE_COLUMNS)


def test_image_caption_csv_by_hand(tmp_path):
    path = _write(tmp_path / "xm.csv", "image,group,lang,caption,note\n"
                                       "a.jpg,1,en,a dog,x\nb.jpg,2,en,a tree,\na.jpg,1,EN,a brown dog,\n"
                                       "a.jpg,1,deu,ein Hund,\n")
    ds = read_parallel_file(path)
    # items() lists them by (group, language) in order of first appearance
    assert ds.items() == [ParallelItem("1", "en", "a dog", ImageRef("a.jpg")),
                          ParallelItem("1", "en", "a brown dog", ImageRef("a.jpg")),
                          ParallelItem("2", "en", "a tree", ImageRef("b.jpg")),
                          ParallelItem("1", "de", "ein Hund", ImageRef("a.jpg"))]
    assert read_parallel_file(path, languages=["ger"]).items() == [ParallelItem("1", "de", "ein Hund",
                                                                                ImageRef("a.jpg"))]
    assert read_parallel_file(path, max_groups=1).groups == ["1"]


def test_image_caption_errors_name_file_and_row(tmp_path):
    two = _write(tmp_path / "two.csv", "group,lang,caption,image\n1,en,a cat,a.jpg\n2,en,x,c.jpg\n"
                                       "1,de,eine Katze,b.jpg\n")
    with pytest.raises(DataError, match=r"two\.csv, row 3: group '1' names the image 'b\.jpg', but .*two\.csv, "
                                        r"row 1 names 'a\.jpg'\. All captions of one group"):
        read_parallel_file(two)
    both = _write(tmp_path / "both.csv", "group,lang,query,positive,caption,image\n1,en,q,p,c,a.jpg\n")
    with pytest.raises(DataError, match=r"both\.csv has both text columns .* and image–caption columns"):
        read_parallel_file(both)
    half = _write(tmp_path / "half.tsv", "group\tlang\tcaption\n1\ten\ta cat\n")
    with pytest.raises(DataError, match=r"half\.tsv lacks the column\(s\) \['image'\].*group,lang,caption,image"):
        read_parallel_file(half)
    empty = _write(tmp_path / "empty.csv", "group,lang,caption,image\n1,en,a cat,a.jpg\n1,de,eine Katze,  \n")
    with pytest.raises(DataError, match=r"empty\.csv, row 2: empty image cell \(group '1', language 'de'\)"):
        read_parallel_file(empty)
    rows = [{"group": "1", "lang": "en", "query": "q", "positive": "p"},
            {"group": "2", "lang": "en", "caption": "c", "image": "a.jpg"}]
    mixed = _write(tmp_path / "mixed.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"mixed\.jsonl, line 2: an image–caption row, but line 1 is a text row"):
        read_parallel_file(mixed)
    nokey = _write(tmp_path / "nokey.jsonl", json.dumps({"group": "1", "lang": "en", "caption": "c"}) + "\n")
    with pytest.raises(DataError, match=r"nokey\.jsonl, line 1: missing key\(s\) \['image'\].*group,lang,caption,"
                                        r"image"):
        read_parallel_file(nokey)


def test_text_file_with_several_rows_per_group_and_language(tmp_path):
    path = _write(tmp_path / "qa.tsv", "group\tlang\tquery\tpositive\n"
                                       "p1\ten\tWho built it?\tIt was built by Ann.\n"
                                       "p1\ten\tWhen was it built?\tIt was built by Ann.\n"
                                       "p1\tDE\tWer baute es?\tAnn baute es.\n")
    ds = read_parallel_file(path)
    assert [(it.lang, it.query) for it in ds.items()] == [("en", "Who built it?"), ("en", "When was it built?"),
                                                         ("de", "Wer baute es?")]
    assert ds.count(0, "en") == 2 and ds.languages == ["de", "en"]
    back = read_parallel_file(write_parallel_file(ds, tmp_path / "back.parquet"))
    assert back.items() == ds.items()


def test_language_codes_are_normalised_or_explained(tmp_path):
    path = _write(tmp_path / "codes.csv", "group,lang,query,positive\n1,EN,q,p\n1, deu ,q,p\n1,zho,q,p\n2,Fra,q,p\n")
    ds = read_parallel_file(path)
    assert [it.lang for it in ds.items()] == ["en", "de", "zh", "fr"]
    written = write_parallel_file(ds, tmp_path / "out.csv").read_text(encoding="utf-8")
    assert written.splitlines()[1:] == ["1,en,q,p,", "1,de,q,p,", "1,zh,q,p,", "2,fr,q,p,"]
    bad = _write(tmp_path / "bad.csv", "group,lang,query,positive\n1,en,q,p\n2,german,q,p\n")
    with pytest.raises(UnknownLanguageError, match=r"Unknown language code 'german' in .*bad\.csv, row 2\. Did you "
                                                   r"mean 'de' \(German\)"):
        read_parallel_file(bad)


# --------------------------------------------------------------------------- encoding errors

def test_latin1_csv_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"group,lang,query,positive\n1,en,q1,p1\n2,de,Stra\xdfe,p2\n3,en,q3,p3\n")
    # header 26 bytes + row 1 11 bytes + "2,de,Stra" 9 bytes: the bad byte is at offset 46
    with pytest.raises(DataError) as err:
        read_parallel_file(path)
    msg = str(err.value)
    assert f"{path}, line 3: not valid UTF-8 text" in msg
    assert "byte 0xdf at byte offset 46 in the file (counted from 0), byte 10 of the line" in msg
    assert "Save the file as UTF-8" in msg


def test_latin1_far_down_a_tsv_with_bom_and_in_gzip(tmp_path):
    rows = [f"g{i}\ten\tquery number {i}\tpassage number {i}\n".encode() for i in range(30_000)]
    bad = b"g30000\tfr\tth\xe9\tp\n"
    head = b"\xef\xbb\xbfgroup\tlang\tquery\tpositive\n"
    data = head + b"".join(rows) + bad + b"g30001\ten\tq\tp\n"
    offset = len(head) + sum(len(r) for r in rows) + len(b"g30000\tfr\tth")
    path = tmp_path / "big.tsv"
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"big\.tsv, line 30002: not valid UTF-8 text .*byte 0xe9 at byte offset "
                                        rf"{offset} in the file"):
        read_parallel_file(path)
    assert offset == 1_466_711
    gz = tmp_path / "big.tsv.gz"
    gz.write_bytes(gzip.compress(data))
    with pytest.raises(DataError, match=rf"big\.tsv\.gz, line 30002: not valid UTF-8 text .*byte offset {offset} of "
                                        r"the uncompressed data"):
        read_parallel_file(gz)


def test_latin1_jsonl_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    first = b'{"group": "1", "lang": "en", "query": "q", "positive": "p"}\n'
    path.write_bytes(first + b'{"group": "2", "lang": "fr", "query": "caf\xe9", "positive": "p"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl, line 2: not valid UTF-8 text \(invalid continuation byte: "
                                        r"byte 0xe9 at byte offset 102 in the file"):
        read_parallel_file(path)
