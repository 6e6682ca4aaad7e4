"""Tiny offline models: tokenizers, model construction, masked-LM and translation-LM
pre-training, caching."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoModel, AutoTokenizer, BertModel, XLMRobertaModel

from hbkit.datasets.demo_world import make_demo_world
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.models.pretraining import (_Masker, mlm_loss, mlm_pretrain, tlm_context_losses, tlm_loss, tlm_pretrain,
                                      translation_pairs)
from hbkit.models.tiny import HEAD_FILE, SPEC_FILE, _learn_wordpiece, build_tiny_model, make_tiny_model, train_tokenizer

ARCH = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position=48)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def world():
    return make_demo_world(seed=0, n_train_entities=30, n_val_entities=5, n_test_entities=3)


@pytest.fixture(scope="module")
def tokenizer_dirs(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    return {kind: (train_tokenizer(world.texts(), kind, root / kind, vocab_size=400), root / kind)[1]
            for kind in ("xlmr", "bert")}


@pytest.mark.parametrize("kind", ["xlmr", "bert"])
def test_tokenizer_round_trip_and_pair_encoding(kind, world, tokenizer_dirs):
    tok = AutoTokenizer.from_pretrained(tokenizer_dirs[kind])
    assert type(tok).__name__ == ("XLMRobertaTokenizer" if kind == "xlmr" else "BertTokenizer")
    assert len(tok) == 400
    for lang, (question, answer) in world.example().items():
        ids = tok(answer)["input_ids"]
        assert tok.unk_token_id not in ids, lang
        decoded = tok.decode(ids, skip_special_tokens=True)
        if kind == "xlmr":
            assert decoded == answer
        else:  # WordPiece decoding may put a space before the final punctuation
            assert decoded.split()[:3] == answer.split()[:3]
            assert decoded.replace(" ", "") == answer.replace(" ", "")
    question, answer = world.example()["ru"]
    q_ids, a_ids = (tok(t, add_special_tokens=False)["input_ids"] for t in (question, answer))
    pair = tok(question, answer)
    if kind == "xlmr":
        assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        assert pair["input_ids"] == [0] + q_ids + [2, 2] + a_ids + [2]
    else:
        cls, sep = tok.cls_token_id, tok.sep_token_id
        assert pair["input_ids"] == [cls] + q_ids + [sep] + a_ids + [sep]
        assert pair["token_type_ids"] == [0] * (len(q_ids) + 2) + [1] * (len(a_ids) + 1)
        name = world.name(world.entities[0].eid, "en")
        assert "".join(tok.tokenize(name)).replace("##", "") == name.replace(" ", "")  # cased, no accents lost


@pytest.mark.parametrize("kind", ["xlmr", "bert"])
def test_tokenizer_training_is_deterministic(kind, world, tokenizer_dirs, tmp_path):
    train_tokenizer(world.texts(), kind, tmp_path, vocab_size=400)
    assert (tmp_path / "tokenizer.json").read_bytes() == (tokenizer_dirs[kind] / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("size, n_pieces", [(150, 271), (300, 295)])  # 271: the alphabet alone
def test_wordpiece_vocabulary_is_the_library_trainers(size, n_pieces, world):
    # Below ~350 pieces these texts leave WordPieceTrainer no ties, so its (otherwise
    # run-dependent) vocabulary is fixed and ours must be exactly it.
    texts = world.texts()
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    pre = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    lib = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    lib.normalizer, lib.pre_tokenizer = norm, pre
    lib.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=size, special_tokens=specials,
                                                            show_progress=False))
    counts = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    ours = _learn_wordpiece(counts, size - len(specials))
    assert len(ours) == len(set(ours)) == n_pieces
    assert set(ours) | set(specials) == set(lib.get_vocab())
    first, inside = {w[0] for w in counts}, {ch for w in counts for ch in w[1:]}
    assert inside - first  # some characters never start a word: they still get a plain piece
    assert set(ours[:271]) == first | inside | {"##" + ch for ch in inside}  # the alphabet, then merges
    assert ours[271:274] == ([] if size == 150 else ["##le", "##si", "##ile"])


def test_unigram_pieces_are_the_library_trainers(world, tokenizer_dirs):
    lib = Tokenizer(models.Unigram())
    lib.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    lib.train_from_iterator(world.texts(), trainers.UnigramTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>",
        show_progress=False))
    ours = AutoTokenizer.from_pretrained(tokenizer_dirs["xlmr"]).get_vocab()
    assert set(ours) == set(lib.get_vocab())  # same pieces; only the scores are re-estimated


@pytest.mark.parametrize("kind, cls", [("xlmr", XLMRobertaModel), ("labse", BertModel)])
def test_model_loads_offline_with_right_shapes(kind, cls, world, tokenizer_dirs, tmp_path):
    tok_dir = tokenizer_dirs["xlmr" if kind == "xlmr" else "bert"]
    out = build_tiny_model(kind, tmp_path / "m", tok_dir, seed=0, **ARCH)
    model = AutoModel.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert isinstance(model, cls)
    assert model.config.vocab_size == len(tok) and model.config.pad_token_id == tok.pad_token_id
    expected_positions = ARCH["max_position"] + (2 if kind == "xlmr" else 0)
    assert model.config.max_position_embeddings == expected_positions
    assert tok.model_max_length == ARCH["max_position"]
    long_text = " ".join(world.texts()[:20])  # truncated to max_position tokens
    batch = tok([world.example()["hi"][1], long_text], padding=True, truncation=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] == ARCH["max_position"]
    with torch.no_grad():
        outputs = model(**batch)
    assert outputs.last_hidden_state.shape == (2, ARCH["max_position"], 32)
    assert outputs.pooler_output.shape == (2, 32)
    pooling = json.loads((out / "hbkit_encoder.json").read_text())["pooling"]
    assert pooling == ("mean" if kind == "xlmr" else "pooler")


def test_same_seed_same_weights(tokenizer_dirs, tmp_path):
    states = [load_file(build_tiny_model("xlmr", tmp_path / f"s{i}", tokenizer_dirs["xlmr"], seed=s, **ARCH)
                        / "model.safetensors") for i, s in enumerate((5, 5, 6))]
    assert states[0].keys() == states[2].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(states[0][key], states[2][key])


def test_mlm_pretraining_lowers_loss_and_reloads(world, tokenizer_dirs, tmp_path):
    texts = world.texts()
    model_dir = build_tiny_model("xlmr", tmp_path / "m", tokenizer_dirs["xlmr"], seed=0, **ARCH)
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    start = load_file(model_dir / "model.safetensors")
    before = mlm_loss(model_dir, texts)
    mlm_pretrain(model_dir, texts, steps=30, lr=3e-3)
    after = mlm_loss(model_dir, texts)
    assert after < before - 0.3, (before, after)
    record = json.loads((model_dir / SPEC_FILE).read_text())["mlm"][-1]
    assert record["steps"] == 30
    assert record["loss_before"] == pytest.approx(before, abs=1e-5)
    assert record["loss_after"] == pytest.approx(after, abs=1e-5)
    trained = load_file(model_dir / "model.safetensors")
    assert trained.keys() == start.keys()  # the saved checkpoint is the encoder, pooler included
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(trained[key], start[key])
    assert torch.equal(trained["pooler.dense.weight"], start["pooler.dense.weight"])
    model = AutoModel.from_pretrained(model_dir)
    assert torch.equal(model.state_dict()[key], trained[key])
    # deterministic: the same pre-training from the same start gives the same weights
    mlm_pretrain(copy, texts, steps=30, lr=3e-3)
    again = load_file(copy / "model.safetensors")
    assert all(torch.equal(again[k], trained[k]) for k in trained)


def test_masking_is_the_collators_on_a_private_seeded_stream(tokenizer_dirs, world):
    tok = AutoTokenizer.from_pretrained(tokenizer_dirs["bert"])
    enc = tok(world.texts()[:400], return_special_tokens_mask=True)
    examples = [{k: enc[k][i] for k in enc.keys()} for i in range(400)]
    torch.manual_seed(1)
    first = _Masker(tok, 0.15, seed=3)(examples)
    torch.manual_seed(2)  # the global RNG does not matter, and is left as it was
    state = torch.get_rng_state()
    second = _Masker(tok, 0.15, seed=3)(examples)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(_Masker(tok, 0.15, seed=4)(examples)["labels"], first["labels"])
    ids = tok(world.texts()[:400], padding=True, return_tensors="pt")["input_ids"]
    picked = first["labels"] != -100
    normal = ~torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert not (picked & ~normal).any()  # never a special token or padding
    assert torch.equal(first["labels"][picked], ids[picked])
    assert picked.sum() / normal.sum() == pytest.approx(0.15, abs=0.01)
    as_mask = (first["input_ids"][picked] == tok.mask_token_id).float().mean()
    kept = (first["input_ids"][picked] == ids[picked]).float().mean()
    assert as_mask == pytest.approx(0.8, abs=0.03) and kept == pytest.approx(0.1, abs=0.03)


def test_make_tiny_model_reuses_a_matching_build(world, tmp_path):
    texts = world.texts()[:400]
    kw = dict(vocab_size=200, **ARCH)
    out = make_tiny_model("labse", tmp_path / "tiny", texts, mlm_steps=2, **kw)
    spec = json.loads((out / SPEC_FILE).read_text())
    assert spec["kind"] == "bert" and spec["request"]["mlm_steps"] == 2 and len(spec["mlm"]) == 1
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert make_tiny_model("labse", out, texts, mlm_steps=2, **kw) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    first = load_file(out / "model.safetensors")
    make_tiny_model("labse", out, texts, mlm_steps=2, seed=1, **kw)  # another request: rebuilt
    assert json.loads((out / SPEC_FILE).read_text())["request"]["seed"] == 1
    assert not torch.equal(load_file(out / "model.safetensors")["embeddings.word_embeddings.weight"],
                           first["embeddings.word_embeddings.weight"])
    assert AutoModel.from_pretrained(out).config.hidden_size == 32


def test_errors_name_the_problem(world, tokenizer_dirs, tmp_path):
    texts = world.texts()[:50]
    with pytest.raises(UnknownModelError, match="xlmr, bert, labse"):
        train_tokenizer(texts, "gpt2", tmp_path / "t")
    with pytest.raises(UnknownModelError, match="xlmr"):
        build_tiny_model("roberta", tmp_path / "m", tokenizer_dirs["xlmr"])
    with pytest.raises(ConfigError, match="divisible"):
        build_tiny_model("xlmr", tmp_path / "m", tokenizer_dirs["xlmr"], hidden_size=30, num_heads=4)
    with pytest.raises(ConfigError, match="does not fit"):
        build_tiny_model("xlmr", tmp_path / "m", tokenizer_dirs["bert"])
    with pytest.raises(ConfigError, match="Unknown tiny-model option"):
        make_tiny_model("xlmr", tmp_path / "m", texts, hidden=32)
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(texts, "xlmr", tmp_path / "t", vocab_size=10)
    with pytest.raises(UnknownModelError, match="config.json missing"):
        mlm_pretrain(tmp_path / "nothing", texts, steps=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        make_tiny_model("xlmr", foreign, texts, vocab_size=100)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_translation_pairs_group_the_translations(world):
    train = world.train
    sets = translation_pairs(train)
    langs = sorted(train.languages)
    assert len(sets) == 2 * len(train) and all(len(texts) == len(langs) for texts in sets)
    assert sets[0] == [train.item(0, lang).query for lang in langs]
    assert sets[1] == [train.item(0, lang).positive for lang in langs]
    assert translation_pairs(train, languages=["ru", "en"])[1] == [train.item(0, "en").positive,
                                                                    train.item(0, "ru").positive]
    assert translation_pairs(train, languages=["en"]) == []  # one language: nothing to pair
    bench = world.benchmark
    by_xid = translation_pairs(bench)
    assert len(by_xid) == 2 * len({q.xid for q in bench.queries})
    xid = bench.queries[0].xid
    assert by_xid[0] == [q.text for q in sorted((q for q in bench.queries if q.xid == xid), key=lambda q: q.lang)]
    with pytest.raises(DataError, match="ParallelDataset or a RetrievalBenchmark"):
        translation_pairs(world.texts())


@pytest.fixture(scope="module")
def tlm_models(tmp_path_factory):
    """A two-language world (en, es) and its tiny model before and after 300 TLM steps."""
    world = make_demo_world(seed=0, languages=["en", "es"], eval_only_languages=(), n_train_entities=200,
                            n_val_entities=5, n_test_entities=20)
    root = tmp_path_factory.mktemp("tlm")
    arch = dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_position=64)
    before = make_tiny_model("xlmr", root / "before", world.texts(), vocab_size=400, mlm_steps=100,
                             mlm_options={"lr": 3e-3}, show_progress=False, **arch)
    after = shutil.copytree(before, root / "after")
    tlm_pretrain(after, translation_pairs(world.train), steps=300, lr=3e-3, show_progress=False)
    return world, before, after


def test_tlm_teaches_the_model_to_read_the_translation(tlm_models):
    world, before, after = tlm_models
    held_out = translation_pairs(world.benchmark)  # test entities: never in pre-training
    # half of a held-out sentence's tokens masked; its translation / an unrelated sentence / nothing in front
    was = tlm_context_losses(before, held_out, n_pairs=200, mask_prob=0.5)
    now = tlm_context_losses(after, held_out, n_pairs=200, mask_prob=0.5)
    assert now["n_pairs"] == 200 and now["n_masked"] == was["n_masked"] > 1000
    assert abs(was["translation"] - was["none"]) < 0.02  # the MLM-only model gains nothing from it
    assert now["translation"] < now["none"] - 0.08, now
    assert now["translation"] < now["unrelated"] - 0.2, now
    assert tlm_loss(after, held_out) < tlm_loss(before, held_out) - 0.3
    spec = json.loads((after / SPEC_FILE).read_text())
    assert len(spec["mlm"]) == 1 and spec["tlm"][0]["steps"] == 300 and spec["tlm"][0]["n_items"] == 2000
    assert spec["tlm"][0]["loss_after"] < spec["tlm"][0]["loss_before"] - 0.8


def test_tlm_adds_a_token_type_and_keeps_the_rest(tlm_models):
    _, before, after = tlm_models
    model = AutoModel.from_pretrained(after)
    assert isinstance(model, XLMRobertaModel) and model.config.type_vocab_size == 2
    old, new = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    key = "embeddings.token_type_embeddings.weight"
    assert old[key].shape[0] == 1 and new[key].shape[0] == 2
    assert (new[key][1] - new[key][0]).norm() > 0.1  # the second sentence's type was learnt apart
    assert (AutoTokenizer.from_pretrained(after).get_vocab() == AutoTokenizer.from_pretrained(before).get_vocab())
    assert (after / HEAD_FILE).exists()


def test_tlm_build_is_deterministic_and_cached(world, tmp_path):
    texts, pairs = world.texts()[:600], translation_pairs(world.train)
    kw = dict(vocab_size=300, mlm_steps=5, tlm_steps=8, parallel_texts=pairs, tlm_options={"lr": 3e-3},
              show_progress=False, **ARCH)
    a = make_tiny_model("xlmr", tmp_path / "a", texts, seed=2, **kw)
    b = make_tiny_model("xlmr", tmp_path / "b", texts, seed=2, **kw)
    c = make_tiny_model("xlmr", tmp_path / "c", texts, seed=3, **kw)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    for name in ("model.safetensors", HEAD_FILE):
        sa, sb = load_file(a / name), load_file(b / name)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(load_file(c / "model.safetensors")[key], load_file(a / "model.safetensors")[key])
    spec = json.loads((a / SPEC_FILE).read_text())
    assert spec["request"]["tlm_steps"] == 8 and spec["request"]["n_parallel"] == len(pairs)
    assert spec["tlm"][0]["seed"] == 2 and spec["tlm"][0]["steps"] == 8
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert make_tiny_model("xlmr", a, texts, seed=2, **kw) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    make_tiny_model("xlmr", a, texts, seed=2, **{**kw, "parallel_texts": pairs[:100]})  # other pairs: rebuilt
    assert json.loads((a / SPEC_FILE).read_text())["request"]["n_parallel"] == 100
    # without TLM the parallel texts are ignored: the same request as a plain build
    plain = make_tiny_model("xlmr", tmp_path / "p", texts, seed=2, vocab_size=300, mlm_steps=5, **ARCH)
    spec = json.loads((plain / SPEC_FILE).read_text())
    assert "tlm" not in spec and "tlm_steps" not in spec["request"]
    assert make_tiny_model("xlmr", plain, texts, seed=2, vocab_size=300, mlm_steps=5, parallel_texts=pairs,
                           **ARCH) == plain
    assert json.loads((plain / SPEC_FILE).read_text()) == spec


def test_tlm_errors_name_the_problem(world, tmp_path):
    texts = world.texts()[:50]
    with pytest.raises(ConfigError, match="needs parallel_texts"):
        make_tiny_model("xlmr", tmp_path / "m", texts, vocab_size=100, tlm_steps=5)
    with pytest.raises(ConfigError, match="tlm_steps must be an integer"):
        make_tiny_model("xlmr", tmp_path / "m", texts, vocab_size=100, tlm_steps=-1, parallel_texts=[["a", "b"]])
    with pytest.raises(ConfigError, match="Unknown tlm_options"):
        make_tiny_model("xlmr", tmp_path / "m", texts, vocab_size=100, tlm_steps=1, parallel_texts=[["a", "b"]],
                        tlm_options={"steps": 3})
    with pytest.raises(DataError, match="a single string"):
        make_tiny_model("xlmr", tmp_path / "m", texts, vocab_size=100, tlm_steps=1, parallel_texts=["a", "b"])
    with pytest.raises(DataError, match="two or more translations"):
        make_tiny_model("xlmr", tmp_path / "m", texts, vocab_size=100, tlm_steps=1, parallel_texts=[["only"], []])
    assert not (tmp_path / "m").exists()
