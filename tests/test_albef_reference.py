"""hbkit's ALBEF against the original salesforce/ALBEF code: the recorded tiny reference in
``../shared/reference/albef-tiny`` (its README says how it was made), and the full-size key manifests.

Every value is compared to 1e-5 (the reference's note: about 1e-6 across implementations)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hbkit.errors import DataError
from hbkit.losses import albef_hard_negatives, albef_itc_loss, albef_itm_loss
from hbkit.models.albef_checkpoint import detect_layout, load_into, read_state, to_hbkit, to_original
from hbkit.models.albef_net import ALBEFNet, ALBEFNetConfig

SHARED = Path(os.environ.get("HBKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REF = SHARED / "reference" / "albef-tiny"
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.skipif(not (REF / "state_dict.safetensors").exists(),
                                reason=f"the ALBEF reference fixture is not at {REF} (../shared/reference/albef-tiny)")]
ATOL = 1e-5




@pytest.fixture(scope="module")
def ref() -> dict:
    from safetensors.torch import load_file

    return {"meta": json.loads((REF / "meta.json").read_text()), "state": load_file(str(REF / "state_dict.safetensors")),
            "x": load_file(str(REF / "inputs.safetensors")), "o": load_file(str(REF / "outputs.safetensors")),
            "after": load_file(str(REF / "state_after_forward.safetensors"))}


def tiny_config(**kw) -> ALBEFNetConfig:
    base = dict(image_res=32, vision_width=32, vision_depth=2, vision_heads=2, vocab_size=100, hidden_size=32,
                num_hidden_layers=4, fusion_layer=2, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=40, embed_dim=16, queue_size=32)
    return ALBEFNetConfig(**{**base, **kw})


def _net(ref, **kw) -> ALBEFNet:
    net = ALBEFNet(tiny_config()).eval()
    report = load_into(net, ref["state"], **{"keep_momentum": True, "keep_queue": True, **kw})
    assert report.layout == "albef-retrieval" and not report.recopied_momentum and report.queue_kept
    return net


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = float((a.float() - b.float()).abs().max())
    assert err <= ATOL, f"{what}: max |diff| {err:.2e} > {ATOL}"


@torch.no_grad()
def test_encoders_fusion_and_itm_logits_equal_the_original(ref):
    net, x, o = _net(ref), ref["x"], ref["o"]
    ie = net.image_embeds(x["image"])
    te = net.text_embeds(x["input_ids"], x["attention_mask"])
    _close(ie, o["image_embeds"], "image_embeds")
    _close(te, o["text_embeds"], "text_embeds")
    _close(net.image_feat(ie), o["image_feat"], "image_feat")
    _close(net.text_feat(te), o["text_feat"], "text_feat")
    fused = net.fuse(te, x["attention_mask"], ie)
    _close(fused, o["fusion_pos_last_hidden"], "fusion output")
    _close(net.itm_logits(fused), o["itm_logits_pos"], "ITM logits")
    # the momentum encoders with the (different) momentum weights of the state dict
    iem = net.image_embeds(x["image"], momentum=True)
    tem = net.text_embeds(x["input_ids"], x["attention_mask"], momentum=True)
    _close(iem, o["pre_ema.image_embeds_m"], "momentum image_embeds")
    _close(tem, o["pre_ema.text_embeds_m"], "momentum text_embeds")
    _close(net.image_feat(iem, True), o["pre_ema.image_feat_m"], "momentum image_feat")
    _close(net.text_feat(tem, True), o["pre_ema.text_feat_m"], "momentum text_feat")
    assert float((o["pre_ema.image_feat_m"] - o["image_feat"]).abs().max()) > 1e-3  # momentum != online here


@torch.no_grad()
def test_momentum_update_itc_itm_losses_and_queue_equal_the_original(ref):
    net, x, o, meta, after = _net(ref), ref["x"], ref["o"], ref["meta"], ref["after"]
    net.momentum_update()
    mine = to_original(net.state_dict(), net.config.fusion_layer)
    momentum = [k for k in after if k.split(".")[0].endswith("_m") and not k.endswith("position_ids")]
    assert len(momentum) == 123
    for k in momentum:
        _close(mine[k], after[k], k)
    ie, te = net.image_embeds(x["image"]), net.text_embeds(x["input_ids"], x["attention_mask"])
    ifm = net.image_feat(net.image_embeds(x["image"], True), True)
    tfm = net.text_feat(net.text_embeds(x["input_ids"], x["attention_mask"], True), True)
    _close(ifm, o["post_ema.image_feat_m"], "post-EMA image_feat_m")
    _close(tfm, o["post_ema.text_feat_m"], "post-EMA text_feat_m")
    idx = x["idx"]
    img_all, txt_all = torch.cat([ifm, net.image_queue.T]), torch.cat([tfm, net.text_queue.T])
    _close(img_all.T, o["fwd.image_feat_all"], "image_feat_all")
    idx_all = torch.cat([idx, net.idx_queue.view(-1)])
    itc = albef_itc_loss(net.image_feat(ie), net.text_feat(te), img_all, txt_all, idx, idx_all, net.temp,
                         float(x["alpha"]), ifm, tfm)
    _close(itc["sim_i2t"] * net.temp, o["fwd.sim_i2t"] * net.temp, "sim_i2t (x temp)")
    _close(itc["sim_t2i"] * net.temp, o["fwd.sim_t2i"] * net.temp, "sim_t2i (x temp)")
    for mine_key, key in (("itc", "loss_ita"), ("i2t", "loss_i2t"), ("t2i", "loss_t2i")):
        assert abs(float(itc[mine_key]) - meta["losses"][key]) <= ATOL, key
    # the negatives: same draws from the same seed, and the ITM loss fed the recorded ones
    torch.manual_seed(4)
    neg_image, neg_text = albef_hard_negatives(itc["sim_i2t"][:, :4], itc["sim_t2i"][:, :4], idx)
    assert neg_image.tolist() == meta["multinomial"]["neg_image_idx_for_text"]
    assert neg_text.tolist() == meta["multinomial"]["neg_text_idx_for_image"]
    ni, nt = o["fwd.neg_image_idx_for_text"], o["fwd.neg_text_idx_for_image"]
    m = x["attention_mask"]
    fused_pos = net.fuse(te, m, ie)
    fused_neg = net.fuse(torch.cat([te, te[nt]]), torch.cat([m, m[nt]]), torch.cat([ie[ni], ie]))
    _close(fused_neg, o["fwd.output_neg_last_hidden"], "negative fusion output")
    logits = net.itm_logits(torch.cat([fused_pos, fused_neg]))
    _close(logits, o["fwd.vl_output"], "ITM logits of positives and negatives")
    assert abs(float(albef_itm_loss(logits, 4)) - meta["losses"]["loss_itm"]) <= ATOL
    net.enqueue(ifm, tfm, idx)
    for k in ("image_queue", "text_queue"):
        _close(getattr(net, k), after[k], k)
    assert torch.equal(net.idx_queue, after["idx_queue"]) and int(net.queue_ptr) == int(after["queue_ptr"]) == 0


@torch.no_grad()
def test_retrieval_itc_and_itm_score_matrices_equal_the_original(ref):
    from hbkit.evaluation import rerank_top_k

    net, x, o = _net(ref), ref["x"], ref["o"]
    ie = net.image_embeds(x["ret.image"])
    te = net.text_embeds(x["ret.input_ids"], x["ret.attention_mask"])
    _close(ie, o["ret.image_embeds"], "retrieval image_embeds")
    _close(te, o["ret.text_embeds"], "retrieval text states")
    sims = net.image_feat(ie) @ net.text_feat(te).T
    _close(sims, o["ret.sims_matrix"], "ITC score matrix")
    n_img, n_txt = sims.shape
    full = torch.empty(n_img, n_txt)
    for i in range(n_img):  # each image against the cached text states of every caption
        fused = net.fuse(te, x["ret.attention_mask"], ie[i:i + 1].expand(n_txt, -1, -1))
        full[i] = net.itm_logits(fused)[:, 1]
    _close(full, o["ret.itm_scores_full"], "ITM scores, image-to-text batching")
    _close(full.T, o["ret.itm_scores_full_t2i_batching"], "ITM scores, text-to-image batching")
    # evaluation() with k_test = 3: its non-(-100) entries are the top-3 re-scored; hbkit keeps ITC beyond k
    i2t = o["ret.score_matrix_i2t_k3"]
    kept = i2t != -100
    assert int(kept.sum(1).min()) == 3
    _close(full[kept], i2t[kept], "re-scored entries of evaluation()'s i2t matrix")
    t2i = o["ret.score_matrix_t2i_k3"]
    _close(full.T[t2i != -100], t2i[t2i != -100], "re-scored entries of evaluation()'s t2i matrix")

    def rescore(q, c):
        return full[q.view(-1, 1), c]

    ours = rerank_top_k(sims.clone(), torch.arange(n_img), torch.arange(n_txt), rescore, 3)
    for i in range(n_img):
        order_orig = sorted(torch.nonzero(kept[i]).flatten().tolist(), key=lambda j: -float(i2t[i, j]))
        order_ours = torch.argsort(ours[i], descending=True).tolist()
        assert order_ours[:3] == order_orig  # the re-scored top 3 in ITM order
        rest = [j for j in torch.argsort(sims[i], descending=True).tolist() if j not in order_orig]
        assert order_ours[3:] == rest  # beyond k: the ITC order, not a -100 tie


def test_layouts_wrappers_pretraining_lavis_and_unknown(ref, tmp_path, caplog):
    state = ref["state"]
    torch.save({"model": state, "epoch": 3}, tmp_path / "wrapped.pth")
    assert torch.equal(read_state(tmp_path / "wrapped.pth")["temp"], state["temp"])
    # pre-training layout: text_encoder.bert.*, a masked-LM head, no idx_queue, 256-px-style position embedding
    pre = {}
    for k, v in state.items():
        for p in ("text_encoder.", "text_encoder_m."):
            if k.startswith(p):
                k = p + "bert." + k[len(p):]
        pre[k] = v
    pre["text_encoder.cls.predictions.bias"] = torch.zeros(100)
    pre.pop("idx_queue")
    assert detect_layout(pre) == "albef-pretrain"
    mapped, _, dropped = to_hbkit(pre, 2)
    assert "text_encoder.cls.predictions.bias" in dropped and "text_encoder.bert.embeddings.word_embeddings.weight" \
        in mapped and "text_encoder.fusion.1.crossattention.self.key.weight" in mapped
    net = ALBEFNet(tiny_config()).eval()
    report = load_into(net, pre)
    assert report.recopied_momentum and not report.queue_kept
    for p, p_m in net.momentum_parameters():
        assert torch.equal(p, p_m)
    with torch.no_grad():
        _close(net.image_feat(net.image_embeds(ref["x"]["image"])), ref["o"]["image_feat"], "pretrain-layout load")
    # LAVIS: no token type embeddings -> a zero table
    lavis = {k: v for k, v in state.items() if "token_type_embeddings" not in k}
    assert detect_layout(lavis) == "lavis-retrieval"
    net = ALBEFNet(tiny_config())
    assert load_into(net, lavis).zero_token_types
    assert float(net.text_encoder.bert.embeddings.token_type_embeddings.weight.abs().sum()) == 0
    # another resolution: interpolated, and said so
    big = ALBEFNet(tiny_config(image_res=64))
    with caplog.at_level("WARNING"):
        report = load_into(big, state)
    assert report.interpolated and "4 -> 16 patches" in report.interpolated[0]
    assert "interpolated" in caplog.text and big.visual_encoder.pos_embed.shape == (1, 17, 32)
    # unknown layouts and mismatched architectures name the keys and the known layouts
    with pytest.raises(DataError, match="Unknown ALBEF checkpoint layout.*albef-retrieval.*albef-pretrain"):
        detect_layout({"encoder.weight": torch.zeros(1)})
    broken = dict(state)
    broken.pop("itm_head.bias")
    broken["itm_head.extra"] = torch.zeros(1)
    with pytest.raises(DataError, match=r"missing keys \[itm_head.bias\].*unexpected keys \[itm_head.extra\]"):
        load_into(ALBEFNet(tiny_config()), broken)
    with pytest.raises(DataError, match="shape mismatches.*vision_proj.weight"):
        load_into(ALBEFNet(tiny_config(embed_dim=8)), state)


def test_every_key_of_the_official_retrieval_manifest_maps_onto_the_full_size_model():
    rows = [line.split("\t") for line in (REF / "official_retrieval_keys.tsv").read_text().splitlines()[1:]]
    manifest = {r[0]: tuple(int(x) for x in r[1].split("x")) if r[1] != "scalar" else () for r in rows}
    assert len(manifest) == 831
    with torch.device("meta"):
        net = ALBEFNet(ALBEFNetConfig())
    ours = {k: tuple(v.shape) for k, v in to_original(net.state_dict(), 6).items()}
    position_ids = {k for k in manifest if k.endswith("position_ids")}  # not persisted by today's transformers
    assert len(position_ids) == 2
    assert set(manifest) - position_ids == set(ours), (set(manifest) ^ set(ours)) - position_ids
    for k, shape in ours.items():
        assert manifest[k] == shape, k
    online = sum(v.numel() for k, v in net.named_parameters() if not k.split(".")[0].endswith("_m"))
    assert online == 209_560_835
    # the pre-training manifest maps onto the same model once its masked-LM head is dropped
    pre_rows = [line.split("\t") for line in (REF / "official_pretrain_keys.tsv").read_text().splitlines()[1:]]
    pre = {r[0]: torch.empty(0) for r in pre_rows}
    mapped, layout, dropped = to_hbkit(pre, 6)
    assert layout == "albef-pretrain" and all(".cls." in k or k.endswith("position_ids") for k in dropped)
    assert set(mapped) == set(net.state_dict()) - {"idx_queue"}
