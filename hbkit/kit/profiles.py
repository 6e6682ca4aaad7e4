"""Named experiment profiles for ``make replicate PROFILE=...`` (flat literals).

- ``demo``: the embedded toy world and a tiny XLM-R-shaped model, CPU, minutes. A TOY:
  its numbers show the mechanics and whether the pattern can appear, not the paper's results.
- ``test``: the same pipeline, minimal sizes, used by ``make test`` to execute and validate notebooks.
- ``small``: a small public multilingual encoder on subsampled public data (mMARCO), evaluated on
  XQuAD-R and MLQA-R — real numbers on a laptop CPU or a free Colab GPU.
- ``paper``: the paper's models and hyperparameters (AdamW, lr 3e-5, weight decay 0.01, batch 100),
  3 seeds, XQuAD-R, MLQA-R and MIRACL, plus an α sweep for XLM-R — needs GPUs and the hubs.

Image–text (CLIP, ``"family": "clip"``):

- ``demo-image``: the embedded toy image world and two tiny CLIPs, CPU, minutes. A TOY.
- ``test-image``: its minimal sizes, for notebook tests.
- ``clip-colab``: open_clip's multilingual ``xlm-roberta-base-ViT-B-32``, image tower locked, a
  Multi30K subset; Multi30K test 2016 and XTD10 — one T4, about 2 hours.
- ``clip-full``: all of Multi30K train, 3 seeds, the four image–text test sets, an α sweep — GPUs.

Image–text (ALBEF; models of the ALBEF family in the same kind of profile):

- ``albef-colab``: ALBEF 4M, multilingual variant at 256 px, a Multi30K subset; one T4, about 3 hours;
  the released Flickr30K checkpoint on Flickr30K 1K test as the English reference check.
- ``albef-full``: all of Multi30K, 3 seeds, the four test sets, the feature-queue ablation, the English
  reference check of the Flickr30K and COCO checkpoints — GPUs.
- ``demo-image`` and ``test-image`` also hold a tiny ALBEF beside the tiny CLIPs.

An ALBEF profile's ``english_reference`` block names released checkpoints to evaluate as released
on the English Flickr30K 1K / COCO 5K test sets, beside ALBEF's published numbers
(:mod:`hbkit.kit.english_reference`); a benchmark source there may name the ``models`` it is for.
"""
from __future__ import annotations

from copy import deepcopy

from hbkit.errors import ConfigError

#: The demo world trains, validates and evaluates on its own splits.
DEMO_DATA = {"train": [{"kind": "demo"}], "validation": {"kind": "demo"}, "benchmarks": [{"kind": "demo"}]}

PROFILES: dict[str, dict] = {
    "demo": {
        "description": "Embedded toy world, tiny XLM-R-shaped model pre-trained with masked LM, CPU.",
        "models": ["tiny-xlmr"],
        "parallel_notebooks": 2,
        "strategies": ["X-X", "X-Y", "hybrid"],
        "seeds": [0, 1],
        "data": DEMO_DATA,
        "evaluation": {"use_context": False},
        "world": {"seed": 0, "n_train_entities": 400, "n_val_entities": 60, "n_test_entities": 80},
        "tiny_model": {"vocab_size": 2000, "hidden_size": 64, "num_layers": 2, "num_heads": 2,
                       "intermediate_size": 128, "mlm_steps": 300},
        "train": {"alpha": 0.5, "batch_size": 32, "max_steps": 1200, "lr": 5e-4, "temperature": 0.05,
                  "val_every": 100, "val_batches": 8, "val_languages": ["en"], "patience": 0,
                  "checkpoint_every": 100, "warmup_ratio": 0.1, "max_query_length": 48, "max_passage_length": 64},
    },
    "test": {
        "description": "Minimal sizes of the demo pipeline, for notebook tests.",
        "models": ["tiny-xlmr"],
        "parallel_notebooks": 2,
        "strategies": ["X-X", "X-Y", "hybrid"],
        "seeds": [0, 1],
        "data": DEMO_DATA,
        "evaluation": {"use_context": False},
        "world": {"seed": 0, "n_train_entities": 40, "n_val_entities": 10, "n_test_entities": 12},
        "tiny_model": {"vocab_size": 600, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                       "intermediate_size": 64, "mlm_steps": 10},
        "train": {"alpha": 0.5, "batch_size": 16, "max_steps": 12, "lr": 3e-4, "temperature": 0.05,
                  "val_every": 6, "val_batches": 2, "val_languages": ["en"], "patience": 0, "checkpoint_every": 6,
                  "warmup_ratio": 0.1, "max_query_length": 48, "max_passage_length": 64},
    },
}


#: The demo with a translation-LM stage after the masked-LM warm-up (XLM's TLM on the world's translation
#: pairs), so the tiny model starts with some cross-lingual knowledge, as XLM-R or LaBSE do. A TOY too.
PROFILES["demo-tlm"] = deepcopy(PROFILES["demo"])
PROFILES["demo-tlm"]["description"] = ("Embedded toy world, tiny XLM-R-shaped model pre-trained with masked LM and "
                                       "then translation LM, CPU.")
PROFILES["demo-tlm"]["tiny_model"].update(tlm_steps=600, tlm_options={"lr": 3e-3})
PROFILES["test"]["tiny_model"]["tlm_steps"] = 10  # exercises the translation-LM stage in the notebook tests

PAPER_LANGUAGES = ["ar", "de", "en", "es", "hi", "ru", "th", "tr", "zh"]
MMARCO_LANGUAGES = ["ar", "de", "en", "es", "hi", "ru", "zh"]  # mMARCO's share of the paper's languages
MIRACL_REPORTED = ["sw", "bn", "hi", "ko", "th", "te", "fi", "ja", "es", "fr", "ru", "zh", "fa", "ar", "id"]

PROFILES["small"] = {
    "description": "Multilingual DistilBERT, 6k mMARCO groups in 7 languages, XQuAD-R + MLQA-R; CPU or free GPU.",
    "models": ["mdistilbert"],
    "strategies": ["X-X", "X-Y", "hybrid"],
    "seeds": [0, 1],
    "data": {
        "train": [{"kind": "mmarco", "languages": MMARCO_LANGUAGES, "max_groups": 6000}],
        "validation": {"kind": "squadshifts", "subset": "nyt", "max_items": 400},
        "benchmarks": [{"kind": "xquad-r"}, {"kind": "mlqa-r"}],
    },
    # True: candidates encoded as sentence + paragraph, as in LAReQA's reference evaluation
    "evaluation": {"use_context": False},
    "train": {"alpha": 0.5, "batch_size": 32, "max_steps": 150, "lr": 3e-5, "weight_decay": 0.01,
              "temperature": 0.05, "val_every": 50, "val_batches": 4, "patience": 0, "checkpoint_every": 25,
              "warmup_ratio": 0.1, "max_query_length": 64, "max_passage_length": 128},
}

PROFILES["paper"] = {
    "description": "XLM-R base and LaBSE, paper hyperparameters, 3 seeds, XQuAD-R + MLQA-R + MIRACL, alpha sweep.",
    "models": ["xlm-roberta-base", "labse"],
    "strategies": ["X-X", "X-Y", "hybrid"],
    "seeds": [0, 1, 2],
    "alpha_sweep": {"model": "xlm-roberta-base", "alphas": [0.0, 0.25, 0.5, 0.75, 1.0], "seeds": [0]},
    "data": {
        "train": [{"kind": "mmarco", "languages": MMARCO_LANGUAGES, "max_groups": 400_000}],
        "validation": {"kind": "squadshifts", "subset": "nyt", "max_items": 2000},
        "benchmarks": [{"kind": "xquad-r"}, {"kind": "mlqa-r"},
                       {"kind": "miracl", "languages": MIRACL_REPORTED}],
    },
    "evaluation": {"use_context": False},
    "train": {"alpha": 0.5, "batch_size": 100, "max_steps": 20_000, "lr": 3e-5, "weight_decay": 0.01,
              "temperature": 0.05, "val_every": 500, "val_batches": 20, "patience": 5, "checkpoint_every": 250,
              "warmup_ratio": 0.05, "max_query_length": 64, "max_passage_length": 256, "grad_cache_chunk": 0},
}


# ------------------------------------------------------------------ image–text (CLIP) profiles
#: The toy image world trains and evaluates on its own splits (no validation split).
IMAGE_WORLD_DATA = {"train": [{"kind": "image-world"}], "benchmarks": [{"kind": "image-world"}]}
IMAGE_STRATEGIES = ["X-X", "X-Y", "hybrid", "1-to-K"]

PROFILES["demo-image"] = {
    "description": ("Embedded toy image world, two tiny CLIPs (text tower pre-trained on a balanced and on a "
                    "Latin-skewed caption mixture), X-X / X-Y / hybrid / 1-to-K, CPU."),
    "family": "clip",
    "models": ["tiny-clip", "tiny-clip-latin", "tiny-albef"],
    "parallel_notebooks": 2,
    "strategies": IMAGE_STRATEGIES,
    "seeds": [0, 1],
    # 1-to-K also at K x the batch, i.e. as many images per step as the other strategies
    "one_to_k_equal_images": {"models": ["tiny-clip"], "seeds": [0]},
    "data": IMAGE_WORLD_DATA,
    "evaluation": {"cross_lingual": True, "caption_setting": True},
    "image_world": {"seed": 0, "n_train_images": 600, "n_test_images": 120, "image_size": 32,
                    "captions_per_language": 2},
    # a small vocabulary, so that a skewed mixture leaves the other scripts with near-character pieces
    "tiny_clip": {"vocab_size": 300, "context_length": 48, "embed_dim": 64, "vision_width": 64, "vision_layers": 2,
                  "text_hidden_size": 64, "text_layers": 2, "text_intermediate_size": 128, "mlm_steps": 200},
    "clip": {"logit_scale": "model"},
    # the tiny ALBEF: the balanced caption mixture (as tiny-clip), 2 text layers + 1 fusion layer
    "tiny_albef": {"vocab_size": 300, "max_length": 48, "embed_dim": 64, "vision_width": 64, "vision_depth": 2,
                   "vision_heads": 2, "patch_size": 8, "hidden_size": 64, "text_layers": 2, "fusion_layers": 1,
                   "num_heads": 2, "intermediate_size": 128, "mlm_steps": 200,
                   # aligned before fine-tuning, as real ALBEF checkpoints are: ITC only, English captions
                   "itc_warmup": {"steps": 600, "languages": ["en"], "momentum": 0.5, "lr": 1e-3, "batch_size": 32}},
    "albef": {"rescore_k": 16},
    "train": {"alpha": 0.5, "one_to_k": 2, "batch_size": 32, "max_steps": 300, "lr": 1e-3, "weight_decay": 0.1,
              "val_every": 0, "patience": 0, "checkpoint_every": 100, "warmup_ratio": 0.1},
}

PROFILES["test-image"] = deepcopy(PROFILES["demo-image"])
PROFILES["test-image"].update(
    description="Minimal sizes of the image–text demo pipeline, for notebook tests.",
    one_to_k_equal_images={"models": ["tiny-clip"], "seeds": [0]},
    image_world={"seed": 0, "n_train_images": 40, "n_test_images": 12, "image_size": 32, "captions_per_language": 2},
    tiny_clip={"vocab_size": 300, "context_length": 48, "embed_dim": 32, "vision_width": 32, "vision_layers": 1, "text_hidden_size": 32,
               "text_layers": 1, "text_intermediate_size": 64, "mlm_steps": 10},
    tiny_albef={"vocab_size": 300, "max_length": 48, "embed_dim": 32, "vision_width": 32, "vision_depth": 1,
                "vision_heads": 2, "patch_size": 8, "hidden_size": 32, "text_layers": 1, "fusion_layers": 1,
                "num_heads": 2, "intermediate_size": 64, "mlm_steps": 10,
                "itc_warmup": {"steps": 6, "languages": ["en"], "momentum": 0.5, "lr": 1e-3, "batch_size": 8}},
    albef={"rescore_k": 4},
)
PROFILES["test-image"]["seeds"] = [0]
PROFILES["test-image"]["train"].update(batch_size=8, max_steps=6, checkpoint_every=3)

MULTI30K_LANGUAGES = ["cs", "de", "en", "fr"]
XTD10_LANGUAGES = ["de", "en", "es", "fr", "it", "ja", "ko", "pl", "ru", "tr", "zh"]

PROFILES["clip-colab"] = {
    "description": ("open_clip xlm-roberta-base-ViT-B-32 (laion5b_s13b_b90k), image tower locked, 10k Multi30K "
                    "training images in 4 languages; Multi30K test 2016 + XTD10; one T4, about 2 hours."),
    "family": "clip",
    "models": ["xlm-roberta-base-ViT-B-32"],
    "strategies": IMAGE_STRATEGIES,
    "seeds": [0],
    "data": {
        "train": [{"kind": "multi30k", "split": "train", "languages": MULTI30K_LANGUAGES, "max_images": 10_000}],
        "benchmarks": [{"kind": "multi30k", "split": "test_2016_flickr", "languages": MULTI30K_LANGUAGES},
                       {"kind": "xtd10", "languages": XTD10_LANGUAGES}],
    },
    "evaluation": {"cross_lingual": True, "caption_setting": True},
    "clip": {"pretrained": "laion5b_s13b_b90k", "lock_image": True, "logit_scale": "model"},
    "train": {"alpha": 0.5, "one_to_k": 4, "batch_size": 128, "max_steps": 600, "lr": 1e-5, "weight_decay": 0.1,
              "val_every": 0, "patience": 0, "checkpoint_every": 100, "warmup_ratio": 0.05, "precision": "auto",
              "loader_workers": 2},
}

PROFILES["clip-full"] = {
    "description": ("open_clip xlm-roberta-base-ViT-B-32, all of Multi30K train (4 languages), 3 seeds, "
                    "Multi30K test 2016 + XTD10 + xFlickr&CO + XM3600 (all captions and first caption only), "
                    "alpha sweep; GPUs."),
    "family": "clip",
    "models": ["xlm-roberta-base-ViT-B-32"],
    "strategies": IMAGE_STRATEGIES,
    "seeds": [0, 1, 2],
    "one_to_k_equal_images": {"models": ["xlm-roberta-base-ViT-B-32"], "seeds": [0, 1, 2]},
    "alpha_sweep": {"model": "xlm-roberta-base-ViT-B-32", "alphas": [0.0, 0.25, 0.5, 0.75, 1.0], "seeds": [0]},
    "data": {
        "train": [{"kind": "multi30k", "split": "train", "languages": MULTI30K_LANGUAGES}],
        "benchmarks": [{"kind": "multi30k", "split": "test_2016_flickr", "languages": MULTI30K_LANGUAGES},
                       {"kind": "xtd10", "languages": XTD10_LANGUAGES},
                       {"kind": "xflickrco"},
                       # XM3600's 261k captions: caption→caption on a seeded sample of 20k caption queries,
                       # cross-lingual pairs left to the smaller sets (261k x 261k scores)
                       {"kind": "xm3600", "cross_lingual": False, "caption_query_sample": 20_000},
                       {"kind": "xm3600", "first_caption_only": True, "cross_lingual": False,
                        "caption_setting": False}],
    },
    "evaluation": {"cross_lingual": True, "caption_setting": True},
    "clip": {"pretrained": "laion5b_s13b_b90k", "lock_image": True, "logit_scale": "model"},
    "train": {"alpha": 0.5, "one_to_k": 4, "batch_size": 256, "max_steps": 3000, "lr": 1e-5, "weight_decay": 0.1,
              "val_every": 0, "patience": 0, "checkpoint_every": 250, "warmup_ratio": 0.05, "precision": "auto",
              "loader_workers": 4},
}


# ------------------------------------------------------------------ image–text (ALBEF) profiles
#: ALBEF's 4M pre-training saw COCO (Karpathy train + restval), Visual Genome, CC3M and SBU, not Flickr30K:
#: Multi30K and Crossmodal-3600 are zero-shot for it; XTD10 (800 of 1000 images are COCO train2014) and
#: xFlickr&CO's COCO half are not, whatever the fine-tuning data.
ALBEF_MULTILINGUAL = {"checkpoint": "albef-4m", "variant": "multilingual", "text_init": "bert-base-multilingual-cased"}
#: Released fine-tuned checkpoints, at their fine-tuning resolution, for the English reference evaluation.
ALBEF_FLICKR30K = {"checkpoint": "albef-flickr30k", "variant": "english", "net": {"image_res": 384}}
ALBEF_COCO = {"checkpoint": "albef-coco", "variant": "english", "net": {"image_res": 384}}

PROFILES["albef-colab"] = {
    "description": ("ALBEF 4M, multilingual variant (embeddings and text layers 0-5 from bert-base-multilingual-cased), "
                    "at 256 px (the pre-training resolution, to fit a T4), the English variant as a zero-shot "
                    "baseline; 10k Multi30K training images in 4 languages; Multi30K test 2016; one T4, about 3 hours."),
    "family": "clip",
    "models": ["albef-4m-multilingual"],
    "extra_zero_shot": ["albef-4m-english"],
    "strategies": IMAGE_STRATEGIES,
    "seeds": [0],
    "data": {
        "train": [{"kind": "multi30k", "split": "train", "languages": MULTI30K_LANGUAGES, "max_images": 10_000}],
        "benchmarks": [{"kind": "multi30k", "split": "test_2016_flickr", "languages": MULTI30K_LANGUAGES}],
    },
    "evaluation": {"cross_lingual": True, "caption_setting": True},
    "albef": {"net": {"image_res": 256}, "rescore_k": 128},
    "model_settings": {"albef-4m-multilingual": ALBEF_MULTILINGUAL,
                       "albef-4m-english": {"checkpoint": "albef-4m", "variant": "english"},
                       "albef-flickr30k-english": ALBEF_FLICKR30K},
    # the released Flickr30K checkpoint as ALBEF evaluated it, beside its published numbers
    "english_reference": {"models": ["albef-flickr30k-english"], "benchmarks": [{"kind": "flickr30k"}]},
    "train": {"alpha": 0.5, "one_to_k": 4, "batch_size": 32, "max_steps": 1500, "lr": 1e-5, "weight_decay": 0.02,
              "val_every": 0, "patience": 0, "checkpoint_every": 100, "warmup_ratio": 0.05, "precision": "auto",
              "loader_workers": 2},
}

PROFILES["albef-full"] = {
    "description": ("ALBEF 4M, multilingual variant, 384 px, all of Multi30K train (4 languages), 3 seeds, Multi30K "
                    "test 2016 + XTD10 + xFlickr&CO + XM3600 (XTD10's and xFlickr&CO's COCO images were in ALBEF's "
                    "pre-training: not zero-shot for it), the feature-queue ablation; GPUs."),
    "family": "clip",
    "models": ["albef-4m-multilingual", "albef-4m-multilingual-queue"],
    "extra_zero_shot": ["albef-4m-english"],
    "strategies": IMAGE_STRATEGIES,
    "seeds": [0, 1, 2],
    "data": {
        "train": [{"kind": "multi30k", "split": "train", "languages": MULTI30K_LANGUAGES}],
        "benchmarks": [{"kind": "multi30k", "split": "test_2016_flickr", "languages": MULTI30K_LANGUAGES},
                       {"kind": "xtd10", "languages": XTD10_LANGUAGES, "rescore_k": 256},
                       {"kind": "xflickrco"},
                       {"kind": "xm3600", "cross_lingual": False, "caption_query_sample": 20_000}],
    },
    "evaluation": {"cross_lingual": True, "caption_setting": True},
    "albef": {"rescore_k": 128},
    "model_settings": {"albef-4m-multilingual": ALBEF_MULTILINGUAL,
                       "albef-4m-multilingual-queue": {**ALBEF_MULTILINGUAL, "queue": True},
                       "albef-4m-english": {"checkpoint": "albef-4m", "variant": "english"},
                       "albef-flickr30k-english": ALBEF_FLICKR30K, "albef-coco-english": ALBEF_COCO},
    # released checkpoints as ALBEF evaluated them (k = 128 on Flickr30K, 256 on COCO), beside the paper
    "english_reference": {"models": ["albef-flickr30k-english", "albef-coco-english"],
                          "benchmarks": [{"kind": "flickr30k"},
                                         {"kind": "coco", "rescore_k": 256, "models": ["albef-coco-english"]}]},
    "train": {"alpha": 0.5, "one_to_k": 4, "batch_size": 64, "max_steps": 3000, "lr": 1e-5, "weight_decay": 0.02,
              "val_every": 0, "patience": 0, "checkpoint_every": 250, "warmup_ratio": 0.05, "precision": "auto",
              "loader_workers": 4},
}


def get_profile(name: str) -> dict:
    """A deep copy of profile ``name``; unknown names raise ConfigError listing the choices."""
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile {name!r}. Choose one of: {', '.join(PROFILES)}.")
    return deepcopy(PROFILES[name])
