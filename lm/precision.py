"""Which precision is fast here, and working copies of a model in another precision for passes
that only read its weights."""

from __future__ import annotations

import copy

import torch


def cast_copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """The model itself when it already computes in `dtype`, else a deep copy cast to `dtype`
    (the caller's model is never changed)."""
    if next(model.parameters()).dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


def bf16_is_fast(device: torch.device | str = "cpu") -> bool:
    """Whether `device` multiplies bf16 matrices natively, so a bf16 forward/backward beats fp32.

    On CPU that takes AMX or AVX512-BF16. Without them (e.g. an AVX2-only EPYC) PyTorch falls
    back to a generic loop: a (64 x 49152) @ (49152 x 576) bf16 product, the shape of the LM
    head's backward, took 5.3 s there against 0.17 s in fp32 (one thread), so the defaults that
    choose bf16 for speed ask this first. The flags are read through torch's own CPU probe."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


PRECISION_CHOICES = ("auto", "bf16", "fp32")  # what the CLI's precision options accept


def wants_bf16(choice: str, device: torch.device | str = "cpu") -> bool:
    """A CLI precision choice resolved: "auto" is `bf16_is_fast(device)`."""
    if choice not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {choice!r}.")
    return bf16_is_fast(device) if choice == "auto" else choice == "bf16"
