"""English reference: a released ALBEF checkpoint on Flickr30K 1K / COCO 5K test, beside ALBEF's paper.

Before a multilingual comparison means anything, the kit's ALBEF must score what ALBEF
reports when it runs a released checkpoint the way ALBEF did. A profile asks for that check
with an ``english_reference`` block::

    "english_reference": {
        "models": ["albef-flickr30k-english", "albef-coco-english"],   # each in model_settings
        "benchmarks": [{"kind": "flickr30k"}, {"kind": "coco", "rescore_k": 256}],
    }

:func:`evaluate_reference` evaluates one such model as released (no fine-tuning here) in the
monolingual setting only (English captions, both directions, ITC and ITC + ITM rows), into
``runs/<model>/english-reference/seed0-<id>/``; :func:`collect_reference` gathers those rows
(they stay out of the strategy comparison's ``results.csv``), and
:func:`hbkit.kit.image_report.albef_vs_published` sets them beside the published table
(:func:`beside_published` does all three, skipping a model whose data is missing with the reason).

No training happens in such a run, and each released checkpoint was fine-tuned on a Karpathy
train split, which shares no image with the test splits; so the profile's leak guard (which
compares the profile's training data with a benchmark) does not apply, and ``evaluation.json``
says so. (The Flickr30K checkpoint's fine-tuning images are, in substance, Multi30K's training
images: it is a reference for English Flickr30K only, never a zero-shot Multi30K model.)
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.kit import experiment as ex
from hbkit.kit.profiles import get_profile

__all__ = ["reference_models", "reference_checkpoints", "reference_config", "evaluate_reference",
           "collect_reference", "beside_published"]

#: The reference evaluation's settings: monolingual only, the way ALBEF reports retrieval.
REFERENCE_EVALUATION = {"cross_lingual": False, "caption_setting": False}


def _block(profile: str) -> dict:
    ref = get_profile(profile).get("english_reference")
    if not ref:
        raise ConfigError(f"Profile {profile!r} has no english_reference block: it evaluates no released checkpoint "
                          "on Flickr30K/COCO. Use albef-colab or albef-full, or add the block (see "
                          "hbkit.kit.english_reference).")
    return ref


def reference_models(profile: str) -> list[str]:
    """The models of ``profile``'s English reference evaluation ([] when it has none)."""
    return list(get_profile(profile).get("english_reference", {}).get("models", []))


def reference_checkpoints(profile: str) -> dict[str, str]:
    """model -> the released checkpoint it loads (from the profile's ``model_settings``)."""
    settings = get_profile(profile).get("model_settings", {})
    return {m: settings.get(m, {}).get("checkpoint", m) for m in reference_models(profile)}


def reference_config(profile: str, model: str, output_dir: str = "runs") -> "ex.RunConfig":
    """The reference "run" of ``model``: the model as released, on the reference benchmarks, monolingual
    only. Its id hashes the model, its settings, the benchmarks and the evaluation settings."""
    ref = _block(profile)
    if model not in ref.get("models", []):
        raise UnknownModelError(f"{model!r} is not among the english_reference models of profile {profile!r}: "
                                f"choose one of {', '.join(ref.get('models', [])) or '(none)'}.")
    run = ex.zero_shot_config(profile, model, output_dir)
    evaluation = {"family": run.evaluation["family"], **REFERENCE_EVALUATION}
    benchmarks = [{k: v for k, v in src.items() if k != "models"} for src in ref["benchmarks"]
                  if model in src.get("models", [model])]  # a source may name the models it is for
    data = {**run.data, "benchmarks": benchmarks}
    ident = {"model": run.model, "assets": run.assets, "encoder": run.encoder, "benchmarks": benchmarks,
             "evaluation": evaluation}
    return dataclasses.replace(run, label=ex.REFERENCE, data=data, evaluation=evaluation,
                               run_id=ex.config_hash(ident))


def evaluate_reference(profile: str, model: str, output_dir: str = "runs", show_progress: bool | None = None,
                       force: bool = False) -> pd.DataFrame:
    """Evaluate released checkpoint ``model`` on the profile's English reference benchmarks; cached
    per benchmark (an interrupted evaluation resumes). Rows have strategy ``"english-reference"``."""
    from hbkit.kit.image_text import build_model

    run = reference_config(profile, model, output_dir)
    return ex.evaluate_image_text_run(run, run.run_dir, show_progress, force, leak_guard=False,
                                      zero_shot=lambda: build_model(run.profile, run.profile_dir, run.model,
                                                                    run.encoder))


def collect_reference(output_dir: str, profile: str) -> pd.DataFrame:
    """All evaluated reference rows of ``profile`` (the current settings' runs only)."""
    frames = []
    for model in reference_models(profile):
        path = reference_config(profile, model, output_dir).run_dir / "results.csv"
        if path.exists():
            frames.append(ex.read_results(path))
    if not frames:
        raise DataError(f"No English reference evaluation of profile {profile!r} under {output_dir}: run "
                        "evaluate_reference(profile, model) for its models first (notebook 11 does).")
    return pd.concat(frames, ignore_index=True)


def beside_published(profile: str, output_dir: str = "runs", show_progress: bool | None = None
                     ) -> tuple[pd.DataFrame | None, str]:
    """Evaluate (or read) every reference model of ``profile`` and set the rows beside ALBEF's paper:
    (:func:`hbkit.kit.image_report.albef_vs_published` table or None, a note). A model whose data or
    checkpoint is missing is skipped, and the note says which and why (the error names the fix),
    so that the comparison notebook still shows everything else."""
    from hbkit.errors import HbkitError
    from hbkit.kit.image_report import albef_vs_published

    models = reference_models(profile)
    if not models:
        return None, (f"Profile {profile!r} evaluates no released checkpoint on Flickr30K/COCO (no english_reference "
                      "block): the published table alone.")
    from hbkit.kit.image_report import ALBEF_RELEASES

    frames, skipped = [], []
    checkpoints = reference_checkpoints(profile)
    for m, ckpt in checkpoints.items():
        if ckpt not in ALBEF_RELEASES:
            skipped.append(f"{m}: its checkpoint {ckpt!r} is not a released ALBEF checkpoint, so ALBEF publishes no "
                           f"number for it (name one of {', '.join(ALBEF_RELEASES)} in the profile's model_settings)")
    for m in [m for m in models if checkpoints[m] in ALBEF_RELEASES]:
        try:
            frames.append(evaluate_reference(profile, m, output_dir, show_progress=show_progress))
        except HbkitError as exc:
            skipped.append(f"{m}: {exc}")
    note = "" if not skipped else "Not evaluated: " + " | ".join(skipped)
    if not frames:
        return None, note
    table = albef_vs_published(pd.concat(frames, ignore_index=True), checkpoints)
    return table, " ".join(x for x in (table.attrs.get("note", ""), note) if x)
