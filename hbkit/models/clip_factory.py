"""Creating open_clip models for :mod:`hbkit.models.clip`: where a model comes from (an open_clip name
and pretrained tag, ``hf-hub:``, ``local-dir:`` or a saved folder), registering saved folders with open_clip,
and clear errors for unknown names and tags (with the valid tags)."""
from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from hbkit.engine.atomic import write_text
from hbkit.errors import ConfigError, UnknownModelError

if TYPE_CHECKING:
    from hbkit.models.clip import CLIPConfig

#: Multilingual open_clip models and their default pretrained tags.
PRESETS: dict[str, str] = {
    "xlm-roberta-base-ViT-B-32": "laion5b_s13b_b90k",
    "xlm-roberta-large-ViT-H-14": "frozen_laion5b_s13b_b90k",
}
DEFAULT_MODEL = "xlm-roberta-base-ViT-B-32"
CONFIG_FILE = "open_clip_config.json"
_LOCAL = "local-dir:"
_HUB = "hf-hub:"
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth")

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence open_clip's root-logger notes and transformers' load reports while creating a model
    (failures still raise)."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level, hf_level, bars = root.level, hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    root.setLevel(logging.CRITICAL)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        root.setLevel(level)
        hf_logging.set_verbosity(hf_level)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass(frozen=True)
class Source:
    """Where a CLIP model comes from.

    ``name``: what open_clip's factory receives; ``pretrained``: the tag or weights file (open_clip
    names only); ``folder``: the local folder (``local-dir``), else None; ``model_cfg``: the
    open_clip model config, text tower paths resolved; ``text_override``: whether ``model_cfg``'s
    text config must be passed to the factory (a relative text folder resolved here)."""

    name: str
    pretrained: str | None
    folder: Path | None
    model_cfg: dict
    text_override: bool = False


def _has_checkpoint(folder: Path) -> bool:
    return any(p.suffix in _CHECKPOINT_SUFFIXES for p in folder.iterdir() if p.is_file())


def _folder_source(folder: Path, pretrained: str | None) -> Source:
    if pretrained not in ("auto", None):
        raise ConfigError(f"pretrained={pretrained!r} applies to open_clip model names; the folder {folder} "
                          "brings its own weights. Drop pretrained.")
    if not folder.is_dir():
        raise UnknownModelError(f"CLIP model folder {folder} does not exist. Check the path, or use an open_clip "
                                f"model name such as {DEFAULT_MODEL!r}.")
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise UnknownModelError(f"{folder} is not an open_clip model folder ({CONFIG_FILE} missing). Point at a "
                                "folder written by CLIPModel.save or make_tiny_clip, or at a run's model/ folder.")
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
        model_cfg = copy.deepcopy(data["model_cfg"])
        text_cfg = model_cfg["text_cfg"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UnknownModelError(f"{config_file} is not a valid open_clip config ({exc.__class__.__name__}: {exc}); "
                                "it needs a 'model_cfg' with 'text_cfg' and 'vision_cfg'.") from exc
    override = False
    hf_name = text_cfg.get("hf_model_name")
    if isinstance(hf_name, str) and not Path(hf_name).is_absolute() and (folder / hf_name).is_dir():
        # a text tower stored inside the folder: resolved here, so the folder can move
        text_cfg["hf_model_name"] = str((folder / hf_name).resolve())
        text_cfg["hf_model_pretrained"] = not _has_checkpoint(folder)
        override = True
    return Source(_LOCAL + str(folder), None, folder, model_cfg, override)


def _name_source(model: str, pretrained: str | None) -> Source:
    import open_clip

    name = model.replace("/", "-")
    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        raise UnknownModelError(
            f"Unknown open_clip model {model!r}."
            + (f" Did you mean: {', '.join(close)}?" if close else "")
            + f" Multilingual models: {', '.join(PRESETS)}. Any name of open_clip.list_models(), "
            "'hf-hub:<org>/<repo>', 'local-dir:<folder>' or a saved model folder also works.")
    tags = list(open_clip.list_pretrained_tags_by_model(name))
    if pretrained == "auto":
        if name in PRESETS:
            pretrained = PRESETS[name]
        elif len(tags) == 1:
            pretrained = tags[0]
        else:
            raise UnknownModelError(f"open_clip model {name!r} has {'no' if not tags else 'several'} pretrained "
                                    f"tags{': ' + ', '.join(tags) if tags else ''}; choose one with pretrained=<tag> "
                                    "(or pretrained=None for a random initialisation).")
    elif pretrained is not None and pretrained not in tags and not os.path.isfile(pretrained):
        raise UnknownModelError(
            f"Unknown pretrained tag {pretrained!r} for open_clip model {name!r}. Valid tags: "
            f"{', '.join(tags) if tags else '(none: use pretrained=None)'}. A path to a weights file also works.")
    model_cfg = open_clip.get_model_config(name)
    return Source(name, pretrained, None, copy.deepcopy(model_cfg))


def resolve_source(model: str, pretrained: str | None = "auto") -> Source:
    """Check ``model`` / ``pretrained`` without downloading anything but an ``hf-hub:`` config.

    Raises UnknownModelError for an unknown open_clip name or tag (listing the valid tags)."""
    if model.startswith(_LOCAL):
        return _folder_source(Path(model[len(_LOCAL):]).expanduser().resolve(), pretrained)
    if model.startswith(_HUB):
        import open_clip

        if pretrained not in ("auto", None):
            raise ConfigError(f"pretrained={pretrained!r} is ignored for {model!r}: a hub model brings its weights. "
                              "Drop pretrained.")
        try:
            with _quiet():
                model_cfg = open_clip.get_model_config(model)
        except Exception as exc:  # noqa: BLE001 - any hub failure: offline, missing repo
            raise UnknownModelError(f"Could not read the open_clip config of {model!r} ({exc.__class__.__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}). Check the id, or run once "
                                    "with internet so the hub cache holds it.") from exc
        if not model_cfg:
            raise UnknownModelError(f"{model!r} holds no open_clip config (open_clip_config.json with model_cfg).")
        return Source(model, None, None, copy.deepcopy(model_cfg))
    path = Path(model).expanduser()
    if path.is_dir() or model.startswith((".", "/", "~")):
        return _folder_source(path.resolve(), pretrained)
    return _name_source(model, pretrained)


def register_folder(folder: str | os.PathLike) -> str:
    """Register a saved CLIP folder with open_clip under a model name (``open_clip.add_model_config``).

    open_clip's named configs hold absolute text-tower paths, so the name is made for the folder
    where it is now (register again after moving it). Then plain open_clip calls work:
    ``create_model_and_transforms(name, pretrained=<folder>/open_clip_model.safetensors)`` and
    ``get_tokenizer(name)``; the transforms are then open_clip's defaults for the image size, not the
    folder's ``preprocess_cfg`` (``local-dir:<folder>`` uses that). Returns the name
    (``hbkit-<folder name>-<hash>``)."""
    import hashlib
    import tempfile

    import open_clip

    source = _folder_source(Path(folder).expanduser().resolve(), None)
    model_cfg = copy.deepcopy(source.model_cfg)
    text_cfg = model_cfg["text_cfg"]
    text_cfg.pop("hf_model_pretrained", None)
    if "hf_tokenizer_name" in text_cfg:  # named configs read the tokenizer from this path
        text_cfg["hf_tokenizer_name"] = str(source.folder)
    blob = json.dumps(model_cfg, sort_keys=True)
    digest = hashlib.sha256(f"{source.folder}\0{blob}".encode()).hexdigest()[:10]
    name = f"hbkit-{source.folder.name}-{digest}"
    config_dir = Path(tempfile.gettempdir()) / "hbkit-open-clip-configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / f"{name}.json"
    if not config_file.exists():
        write_text(config_file, blob)  # atomic: several processes may register at once
    open_clip.add_model_config(config_file)
    return name


def _creation_error(source: Source, exc: Exception) -> UnknownModelError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    where = source.name + (f" (pretrained {source.pretrained!r})" if source.pretrained else "")
    return UnknownModelError(
        f"Could not create open_clip model {where}: {exc.__class__.__name__}: {first}. Its weights, text tower and "
        "tokenizer come from the Hugging Face hub: run once with internet (they are cached), or pass a folder "
        "written by CLIPModel.save.")


def create_clip(source: Source, settings: CLIPConfig, seed: int | None = None):
    """(open_clip model, train transform, eval transform, tokenizer) through open_clip's factory."""
    import open_clip

    kwargs: dict[str, Any] = {}
    if source.text_override:
        text_cfg = dict(source.model_cfg["text_cfg"])
        if settings.context_length is not None:
            text_cfg["context_length"] = settings.context_length
        kwargs["text_cfg"] = text_cfg
    elif settings.context_length is not None:
        kwargs["force_context_length"] = settings.context_length
    if source.folder is None and source.pretrained is None:
        kwargs["pretrained_text"] = False  # a random initialisation throughout
    try:
        with _quiet(), torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model, train_tf, eval_tf = open_clip.create_model_and_transforms(
                source.name, pretrained=source.pretrained, **kwargs)
            tokenizer = open_clip.get_tokenizer(source.name, context_length=settings.context_length)
    except (RuntimeError, OSError, ValueError) as exc:
        raise _creation_error(source, exc) from exc
    return model, train_tf, eval_tf, tokenizer


def check_tokenizer(tokenizer: Any, model: torch.nn.Module) -> None:
    """Refuse a tokenizer whose ids do not fit the text tower (vocabulary size, padding id)."""
    hf_tok = getattr(tokenizer, "tokenizer", None)
    config = getattr(getattr(model, "text", None), "config", None)
    if hf_tok is None or config is None:
        return
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    if vocab and len(hf_tok) > vocab:
        raise ConfigError(f"The tokenizer has {len(hf_tok)} tokens but the text tower embeds {vocab}: they do not "
                          "belong together. Use the tokenizer open_clip pairs with the model (get_tokenizer).")
    pad = getattr(config, "pad_token_id", None)
    if pad is not None and hf_tok.pad_token_id is not None and hf_tok.pad_token_id != pad:
        raise ConfigError(f"The tokenizer pads with id {hf_tok.pad_token_id} but the text tower masks id {pad}: "
                          "they do not belong together. Use the tokenizer open_clip pairs with the model.")


