"""The trainable blocks of RECIPE (§4.1–4.2) and MedREK (§4.2): projections, prompt encoders,
and the knowledge sentinel (MedREK's "knowledge prototype").

Shapes: `x` is a pooled encoder vector [N, 4h], `z` a representation [N, r], a prompt is
[N, T, d_llm]. Nothing here knows about texts, tokenizers or the LLM; callers pass tensors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn


class CopySlots(NamedTuple):
    """The copy slots of the attention encoder: the LLM's input embeddings of a statement's
    last tokens, last token first [N, n, d], and which of them are real tokens [N, n]."""

    embeds: torch.Tensor
    mask: torch.Tensor


class ResidualBlock(nn.Module):
    """`x + ReLU(Linear(x))`: the residual block RECIPE stacks after each projection."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.linear(x))


class ProjectionMLP(nn.Module):
    """`Linear(in -> r)` then a residual block: RECIPE's MLP_K / MLP_Q, MedREK's MLP_qk / MLP_v."""

    def __init__(self, in_width: int, width: int):
        super().__init__()
        self.project = nn.Linear(in_width, width)
        self.residual = ResidualBlock(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(self.project(x))


class MLPPromptEncoder(nn.Module):
    """RECIPE's MLP_P: residual block on r, then `Linear(r -> T·d)` reshaped to T prompt tokens.

    `copy_embeds` / `copy_mask` are accepted (and ignored) so both encoders share one call.
    """

    def __init__(self, width: int, length: int, llm_width: int, embedding_scale: float):
        super().__init__()
        self.length, self.llm_width = length, llm_width
        self.residual = ResidualBlock(width)
        self.output = nn.Linear(width, length * llm_width)
        # Start the prompt at the scale of real token embeddings: a prompt orders of magnitude
        # larger or smaller than what the LLM was trained on gives it nothing useful to learn from.
        _scale_init(self.output, embedding_scale / math.sqrt(width))

    def forward(self, z: torch.Tensor, copies: CopySlots | None = None) -> torch.Tensor:
        del copies  # RECIPE's prompt is a function of z alone
        return self.output(self.residual(z)).view(-1, self.length, self.llm_width)


class AttentionPromptEncoder(nn.Module):
    """MedREK's attention prompt encoder, with something to attend over.

    T queries come from `z` (paper: Q = reshape(W_q z)) plus a learned per-position vector.
    They attend, with multi-head attention, over a set of key/value tokens:
      - `slots` knowledge slots projected from `z` (`reshape(W_s z)`, m tokens), and
      - up to `copy_tokens` copy slots: the LLM's own input embeddings of the statement's last
        tokens (the target and the end of the question), each keyed with a learned vector for
        its position counted from the end, so a query can pick "the j-th token from the end".
    The published code attends over one key/value vector, where every attention weight is 1
    and all T outputs coincide (MedREK §4.2.2's encoder as released); here they can differ. Copy slots
    let a prompt carry a name the encoder never saw in training: values pass token embeddings
    through, so the prompt need not rebuild a rare drug name from a pooled sentence vector.

    Initialisation: value and output projections are the identity and query t is matched to
    copy slot T-1-t, so the untrained prompt is the statement's last T tokens in reading order
    (an in-context statement, which the frozen LLM already half follows); training starts from
    there instead of from noise.
    """

    # Attention score (per head) of a query with its matched copy slot at initialisation: high
    # enough that softmax puts nearly all weight there, against chance matches of std ~1.4.
    MATCH_SCORE = 12.0
    # Std of the slots' key vectors: each query then weighs the m slots differently from the start.
    SLOT_KEY_STD = 0.5

    def __init__(
        self,
        width: int,
        length: int,
        llm_width: int,
        embedding_scale: float,
        *,
        slots: int,
        copy_tokens: int,
        heads: int,
    ):
        super().__init__()
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}.")
        if llm_width % heads:
            raise ValueError(f"heads ({heads}) must divide the LLM width ({llm_width}).")
        self.length, self.llm_width = length, llm_width
        self.slots, self.copy_tokens, self.heads = slots, copy_tokens, heads
        self.query_from_z = nn.Linear(width, length * llm_width)
        self.slots_from_z = nn.Linear(width, slots * llm_width)
        for projection in (self.query_from_z, self.slots_from_z):
            _scale_init(projection, embedding_scale / math.sqrt(width))
        head_width = llm_width // heads
        # A matched pair scores head_width * std^2 / sqrt(head_width) per head.
        match_std = math.sqrt(self.MATCH_SCORE / math.sqrt(head_width))
        self.query_position = nn.Parameter(torch.randn(length, llm_width) * match_std)
        self.slot_position = nn.Parameter(torch.randn(slots, llm_width) * self.SLOT_KEY_STD)
        self.copy_position = None  # without copy slots the prompt sees nothing of the LLM
        if copy_tokens:
            copy_position = torch.randn(copy_tokens, llm_width) * match_std
            for slot in range(min(length, copy_tokens)):
                copy_position[slot] = self.query_position.detach()[length - 1 - slot]
            self.copy_position = nn.Parameter(copy_position)
        self.key = nn.Linear(llm_width, llm_width)
        self.value = nn.Linear(llm_width, llm_width)
        self.output = nn.Linear(llm_width, llm_width)
        # Keys start at zero so, at first, only the position vectors decide where a query looks.
        nn.init.zeros_(self.key.weight)
        nn.init.zeros_(self.key.bias)
        for projection in (self.value, self.output):
            nn.init.eye_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, z: torch.Tensor, copies: CopySlots | None = None) -> torch.Tensor:
        """Prompts [B, T, d]. Copy slot j is the statement's j-th token from the end."""
        batch = z.shape[0]
        queries = self.query_from_z(z).view(batch, self.length, -1) + self.query_position
        values = self.slots_from_z(z).view(batch, self.slots, -1)
        position = self.slot_position.expand(batch, -1, -1)
        available = torch.ones(batch, self.slots, dtype=torch.bool, device=z.device)
        if self.copy_tokens and copies is not None and copies.embeds.shape[1]:
            count = min(copies.embeds.shape[1], self.copy_tokens)
            values = torch.cat([values, copies.embeds[:, :count].to(z.dtype)], dim=1)
            position = torch.cat([position, self.copy_position[:count].expand(batch, -1, -1)], dim=1)
            available = torch.cat([available, copies.mask[:, :count].to(torch.bool)], dim=1)
        keys = self.key(values) + position
        return self.output(self._attend(queries, keys, self.value(values), available))

    def _attend(self, queries, keys, values, available) -> torch.Tensor:
        batch, length, width = queries.shape
        head_width = width // self.heads

        def split(tensor):  # [B, S, d] -> [B, heads, S, d / heads]
            return tensor.view(batch, tensor.shape[1], self.heads, head_width).transpose(1, 2)

        scores = split(queries) @ split(keys).transpose(-1, -2) / math.sqrt(head_width)
        scores = scores.masked_fill(~available[:, None, None, :], float("-inf"))
        mixed = scores.softmax(-1) @ split(values)
        return mixed.transpose(1, 2).reshape(batch, length, width)


class KnowledgeSentinel(nn.Module):
    """RECIPE's Knowledge Sentinel Θ: c trainable encoder input embeddings.

    Pooled through the knowledge encoder like a text, then projected like a key; a query
    retrieves an entry only if it is more similar to it than to the sentinel.
    """

    def __init__(self, tokens: int, encoder_width: int, init: torch.Tensor | None = None):
        super().__init__()
        if init is None:
            init = torch.randn(tokens, encoder_width) * 0.02
        if tuple(init.shape) != (tokens, encoder_width):
            raise ValueError(f"sentinel init has shape {tuple(init.shape)}, expected {(tokens, encoder_width)}.")
        self.embeddings = nn.Parameter(init.detach().clone().float())

    def pooled(self, encoder) -> torch.Tensor:
        """The sentinel's pooled encoder vector [1, 4h] (differentiable in the embeddings)."""
        return encoder.encode_embeddings(self.embeddings.unsqueeze(0))


def _scale_init(linear: nn.Linear, std: float) -> None:
    nn.init.normal_(linear.weight, std=std)
    nn.init.zeros_(linear.bias)
