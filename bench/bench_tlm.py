"""Intrinsic effect of the translation-LM (TLM) stage on the demo profile's tiny model.

Builds the demo profile's tiny model (its world, tokenizer size, architecture and MLM steps,
seed = the world's seed) without and with TLM on ``translation_pairs(world.train)``, plus a
control with as many further *MLM* steps at the TLM learning rate instead of TLM (the same
compute without the pairing), and prints, for each, on the benchmark's held-out entities
(never in pre-training):

- MLM loss on monolingual texts (nats per masked token; the training languages' questions
  and answer sentences);
- TLM loss on translation pairs (both sentences masked);
- the loss on a target sentence with half its tokens masked, given its translation / an
  unrelated sentence / nothing as first segment (how much the model reads the other language);
- retrieval mAP of the encoder as pre-trained (not trained for retrieval): mean-pooled,
  L2-normalised embeddings, no prefixes, through ``hbkit.evaluation.evaluate_embeddings``,
  macro-averaged over query languages by ``headline`` (Greek is eval-only: unseen by TLM).

    python bench/bench_tlm.py [--tlm-steps N] [--tlm-lr LR] [--work DIR]

Defaults: the profile's ``tlm_steps`` / ``tlm_options`` when it has them, else 300 steps at
lr 3e-3. Takes a few minutes on 2 CPU cores (two model builds of a few hundred steps each).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HBKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from hbkit.datasets.demo_world import make_demo_world  # noqa: E402
from hbkit.evaluation import evaluate_embeddings, headline  # noqa: E402
from hbkit.kit.profiles import PROFILES  # noqa: E402
from hbkit.models.tiny import (make_tiny_model, mlm_loss, mlm_pretrain, tlm_context_losses,  # noqa: E402
                               tlm_loss, translation_pairs)

TINY_KINDS = {"tiny-xlmr": "xlmr", "tiny-labse": "bert"}
DEFAULT_TLM_STEPS, DEFAULT_TLM_LR = 300, 3e-3
MAX_QUERY_LENGTH, MAX_PASSAGE_LENGTH = 48, 64  # the demo profile's encoder lengths (tokens)
CONTEXT_MASK_PROB = 0.5  # share of the target sentence's tokens masked in the context probe


@torch.no_grad()
def mean_pooled(model_dir: Path, texts: list[str], max_length: int, batch_size: int = 128) -> torch.Tensor:
    """(n, hidden) L2-normalised mean-pooled last hidden states of the model in ``model_dir``."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def retrieval(model_dir: Path, bench, label: str) -> pd.DataFrame:
    """Headline mAP per setting of the pre-trained encoder on ``bench``."""
    q = mean_pooled(model_dir, [x.text for x in bench.queries], MAX_QUERY_LENGTH)
    c = mean_pooled(model_dir, [x.text for x in bench.candidates], MAX_PASSAGE_LENGTH)
    df = evaluate_embeddings(bench, q, c, meta={"model": label}, show_progress=False)
    head = headline(df)
    return head[head.metric.isin(["mAP", "rank_distance"])]


def main() -> None:
    prof = PROFILES["demo"]
    tiny = dict(prof["tiny_model"])
    tlm_keys = {k: tiny.pop(k) for k in ("tlm_steps", "tlm_options") if k in tiny}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tlm-steps", type=int, default=tlm_keys.get("tlm_steps") or DEFAULT_TLM_STEPS)
    parser.add_argument("--tlm-lr", type=float, default=tlm_keys.get("tlm_options", {}).get("lr", DEFAULT_TLM_LR))
    parser.add_argument("--work", type=Path, default=None, help="keep the built models here (default: a temp dir)")
    args = parser.parse_args()
    torch.manual_seed(0)

    world = make_demo_world(**prof["world"])
    kind = TINY_KINDS[prof["models"][0]]
    seed = prof["world"]["seed"]
    pairs = translation_pairs(world.train)
    held_pairs = translation_pairs(world.benchmark, languages=world.train_languages)
    held_texts = [q.text for q in world.benchmark.queries if q.lang in world.train_languages] + \
                 [c.text for c in world.benchmark.candidates if c.lang in world.train_languages]
    tlm_options = {**tlm_keys.get("tlm_options", {}), "lr": args.tlm_lr}
    print(f"demo world: {len(world.train)} training groups -> {len(pairs)} translation sets; held out: "
          f"{len(held_texts)} texts, {len(held_pairs)} translation sets ({len(world.benchmark.queries)} "
          f"benchmark queries); tiny {kind}: {tiny}; TLM: {args.tlm_steps} steps, {tlm_options}; "
          f"{torch.get_num_threads()} torch threads")

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_tlm_"))
    control = f"MLM + MLM {args.tlm_steps}"
    variants = {"MLM only": {}, control: {}, f"MLM + TLM {args.tlm_steps}": {
        "tlm_steps": args.tlm_steps, "parallel_texts": pairs, "tlm_options": tlm_options}}
    rows, tables = [], []
    try:
        for label, extra in variants.items():
            start = time.perf_counter()
            name = label.replace(" + ", "_").replace(" ", "") + (f"_lr{args.tlm_lr:g}" if label != "MLM only" else "")
            model_dir = make_tiny_model(kind, work / name, world.texts(), seed=seed, show_progress=False,
                                        **tiny, **extra)
            if label == control and not (model_dir / "control.done").exists():
                mlm_pretrain(model_dir, world.texts(), steps=args.tlm_steps, seed=seed, show_progress=False,
                             **tlm_options)
                (model_dir / "control.done").write_text("")
            build_s = time.perf_counter() - start
            ctx = tlm_context_losses(model_dir, held_pairs, n_pairs=256, mask_prob=CONTEXT_MASK_PROB, seed=seed)
            rows.append({"variant": label, "build_s": round(build_s, 1),
                         "mlm_loss_mono": mlm_loss(model_dir, held_texts, batch_size=256, seed=seed),
                         "tlm_loss_pairs": tlm_loss(model_dir, held_pairs, batch_size=256, seed=seed),
                         "ctx_translation": ctx["translation"], "ctx_unrelated": ctx["unrelated"],
                         "ctx_none": ctx["none"]})
            tables.append(retrieval(model_dir, world.benchmark, label))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    pd.set_option("display.width", 200)
    print("\nHeld-out losses (nats per masked token; ctx_*: target sentence with "
          f"{CONTEXT_MASK_PROB:.0%} of its tokens masked, given its translation / an unrelated sentence / "
          f"nothing; {ctx['n_pairs']} pairs, {ctx['n_masked']} tokens):")
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    table = pd.concat(tables).pivot_table(index=["setting", "metric"], columns="model", values="value",
                                          sort=False)[list(variants)]
    print("\nRetrieval on the demo benchmark, encoder as pre-trained (mean pooling, no retrieval training):")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
