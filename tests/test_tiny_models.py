"""Tiny offline models: tokenizers, model construction, masked-LM pre-training, caching."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, BertModel, XLMRobertaModel

from hbkit.datasets.demo_world import make_demo_world
from hbkit.errors import ConfigError, UnknownModelError
from hbkit.models.tiny import (SPEC_FILE, build_tiny_model, make_tiny_model, mlm_loss, mlm_pretrain,
                               train_tokenizer)

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
