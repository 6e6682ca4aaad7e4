"""Automatic mixed-precision choice: bf16 where supported, else fp16 + scaler on CUDA, else fp32."""
from __future__ import annotations

import contextlib

import torch

from hbkit.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def choose_precision(device: torch.device, requested: str = "auto") -> str:
    """Resolve ``requested`` ("auto", "bf16", "fp16", "fp32") for ``device``."""
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {requested!r}.")
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise ConfigError("precision='fp16' needs a CUDA GPU; use 'auto' or 'fp32' on CPU.")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(device: torch.device, precision: str):
    """A gradient scaler for fp16, else ``None``."""
    if precision == "fp16":
        return torch.amp.GradScaler(device.type)
    return None
