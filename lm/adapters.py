"""Architecture adapters: where each family keeps the modules the editors read and rewrite.

Chosen by `config.model_type` only (never by matching a model name), so the editing math can
say "the MLP output projection of layer l" without knowing the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lm.errors import UsageError


class UnsupportedArchitecture(UsageError):
    """The model's `config.model_type` has no adapter."""


@dataclass(frozen=True)
class ArchAdapter:
    """Module path templates (`{}` is the layer index) and weight orientation for one family.

    `mlp_out_transposed` is True where the output projection stores its weight as
    `[d_ff, d]` (GPT-2's Conv1D) instead of nn.Linear's `[d, d_ff]`.
    """

    family: str
    blocks: str
    attention: str
    mlp: str
    mlp_out: str
    final_norm: str
    lm_head: str
    embeddings: str
    mlp_out_transposed: bool = False

    def block_name(self, layer: int) -> str:
        return self.blocks.format(layer)

    def attention_name(self, layer: int) -> str:
        return self.attention.format(layer)

    def mlp_name(self, layer: int) -> str:
        return self.mlp.format(layer)

    def mlp_out_name(self, layer: int) -> str:
        return self.mlp_out.format(layer)

    def mlp_out_weight(self, model: nn.Module, layer: int) -> torch.Tensor:
        return model.get_submodule(self.mlp_out_name(layer)).weight

    def num_layers(self, model: nn.Module) -> int:
        return len(model.get_submodule(self.blocks.rsplit(".", 1)[0]))

    def widths(self, model: nn.Module) -> tuple[int, int]:
        """(d, d_ff): residual width and MLP hidden width, read from the weight itself."""
        rows, cols = self.mlp_out_weight(model, 0).shape
        return (cols, rows) if self.mlp_out_transposed else (rows, cols)


def _adapter(family: str, model: str, blocks: str, attention: str, mlp_out: str, final_norm: str,
             embeddings: str, mlp_out_transposed: bool = False) -> ArchAdapter:
    """An adapter whose modules all sit under `model` (the MLP as `mlp` in each block, the
    output head as `lm_head` beside it); `blocks` is the block list, the rest is named in it."""
    block = f"{model}.{blocks}.{{}}"
    return ArchAdapter(
        family=family, blocks=block, attention=f"{block}.{attention}", mlp=f"{block}.mlp",
        mlp_out=f"{block}.mlp.{mlp_out}", final_norm=f"{model}.{final_norm}", lm_head="lm_head",
        embeddings=f"{model}.{embeddings}", mlp_out_transposed=mlp_out_transposed)


_DECODER = _adapter("llama", "model", "layers", "self_attn", "down_proj", "norm", "embed_tokens")

ADAPTERS: dict[str, ArchAdapter] = {
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "gemma": _DECODER,
    "gemma2": _DECODER,
    "gemma3_text": _DECODER,
    # GPT-2 and GPT-J name everything alike but the MLP output projection (Conv1D in GPT-2).
    "gpt2": _adapter("gpt2", "transformer", "h", "attn", "c_proj", "ln_f", "wte", mlp_out_transposed=True),
    "gptj": _adapter("gptj", "transformer", "h", "attn", "fc_out", "ln_f", "wte"),
}


def adapter_for(model: nn.Module) -> ArchAdapter:
    return adapter_for_type(getattr(model.config, "model_type", None))


def adapter_for_type(model_type: str | None) -> ArchAdapter:
    """The adapter for a `config.model_type`, with no model object needed (the covariance
    cache lookup builds module names from `config.json` alone)."""
    if model_type not in ADAPTERS:
        raise UnsupportedArchitecture(f"No architecture adapter for model_type {model_type!r}; "
                                      f"supported: {', '.join(sorted(ADAPTERS))}.")
    return ADAPTERS[model_type]
