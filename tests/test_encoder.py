"""BiEncoder: pooling, normalisation, prefixes, save/load, errors."""
from __future__ import annotations

import pytest
import torch

from hbkit.datasets.demo_world import make_demo_world
from hbkit.models.bi_encoder import BiEncoder, EncoderConfig, load_encoder
from hbkit.errors import DataError, UnknownModelError, ConfigError
from hbkit.models.tiny import make_tiny_model


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    world = make_demo_world(seed=1, n_train_entities=20, n_val_entities=5, n_test_entities=5)
    root = tmp_path_factory.mktemp("enc")
    kw = dict(seed=0, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, mlm_steps=0)
    return {"xlmr": make_tiny_model("xlmr", root / "x", world.texts(), **kw),
            "bert": make_tiny_model("bert", root / "b", world.texts(), **kw), "texts": world.texts()[:10]}


@pytest.mark.parametrize("kind, pooling", [("xlmr", "mean"), ("bert", "cls"), ("bert", "pooler")])
def test_pooling_matches_manual_computation(dirs, kind, pooling):
    enc = BiEncoder(EncoderConfig(model=str(dirs[kind]), pooling=pooling)).eval()
    texts = dirs["texts"][:4]
    emb = enc.encode(texts, kind="query", batch_size=3)
    assert emb.shape == (4, 32)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    batch = enc.tokenizer(["Query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = enc.model(**batch).last_hidden_state
        if pooling == "mean":
            m = batch["attention_mask"].unsqueeze(-1).float()
            v = (h * m).sum(1) / m.sum(1)
        elif pooling == "cls":
            v = h[:, 0]
        else:
            v = torch.tanh(enc.model.pooler.dense(h[:, 0]))
    assert torch.allclose(emb, torch.nn.functional.normalize(v, dim=-1), atol=1e-5)


def test_prefix_changes_embedding_and_save_load_roundtrip(dirs, tmp_path):
    enc = BiEncoder(EncoderConfig(model=str(dirs["bert"]), pooling="pooler"))
    t = dirs["texts"][:3]
    q, p = enc.encode(t, kind="query"), enc.encode(t, kind="passage")
    assert not torch.allclose(q, p)
    enc.save_pretrained(tmp_path / "saved")
    again = load_encoder(tmp_path / "saved")
    assert again.config.pooling == "pooler"
    assert torch.allclose(again.encode(t, kind="passage"), p, atol=1e-6)


def test_errors(dirs, tmp_path):
    enc = BiEncoder(EncoderConfig(model=str(dirs["xlmr"])))
    with pytest.raises(DataError, match="Empty query text at position 1"):
        enc.encode(["fine", "  "], kind="query")
    with pytest.raises(UnknownModelError, match="does not exist"):
        BiEncoder(EncoderConfig(model=str(tmp_path / "nope")))
    with pytest.raises(UnknownModelError, match="local directory"):
        BiEncoder(EncoderConfig(model="no-such-org/no-such-model-hbkit"))
    with pytest.raises(ConfigError, match="pooling"):
        BiEncoder(EncoderConfig(model=str(dirs["xlmr"]), pooling="max"))


def test_labse_pipeline_equals_sentence_transformers(dirs, tmp_path):
    """[CLS] → Dense+tanh → normalise, as LaBSE's published sentence-transformers pipeline, on the same weights."""
    st_mod = pytest.importorskip("sentence_transformers")
    from sentence_transformers import models

    word = models.Transformer(str(dirs["bert"]), max_seq_length=64)
    dense = models.Dense(32, 32, activation_function=torch.nn.Tanh())
    torch.manual_seed(0)
    torch.nn.init.normal_(dense.linear.weight, std=0.3)  # differs from the BERT pooler's weights
    st = st_mod.SentenceTransformer(modules=[word, models.Pooling(32, "cls"), dense, models.Normalize()],
                                    device="cpu")
    st.save(str(tmp_path / "st-labse"))
    texts = dirs["texts"][:5]
    expected = st.encode(texts, convert_to_tensor=True, normalize_embeddings=False)
    enc = BiEncoder(EncoderConfig(model=str(tmp_path / "st-labse"), pooling="pooler", query_prefix="",
                                  passage_prefix="", max_query_length=64, max_passage_length=64))
    got = enc.encode(texts, kind="passage")
    assert torch.allclose(got, expected.cpu(), atol=1e-5)
    plain = BiEncoder(EncoderConfig(model=str(dirs["bert"]), pooling="pooler", query_prefix="",
                                    passage_prefix="")).encode(texts, kind="passage")
    assert not torch.allclose(plain, expected.cpu(), atol=1e-3)  # the Dense weights matter


def test_model_registry_loads_an_exported_bi_encoder(tmp_path, dirs):
    from hbkit.errors import UnknownModelError
    from hbkit.models import load_model, model_class

    enc = BiEncoder(EncoderConfig(model=str(dirs["xlmr"])))
    enc.save(tmp_path / "exported")
    again = load_model(tmp_path / "exported")
    assert isinstance(again, BiEncoder) and model_class("bi-encoder") is BiEncoder
    texts = ["Query: a", "Query: bb"]
    assert torch.allclose(enc.encode(texts, "query"), again.encode(texts, "query"), atol=1e-6)
    with pytest.raises(UnknownModelError, match="Unknown model family 'gpt'"):
        model_class("gpt")
    with pytest.raises(UnknownModelError, match="holds no exported hbkit model"):
        load_model(tmp_path)
