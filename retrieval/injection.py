"""Prepend continuous prompts to an HF causal LM's input embeddings, for forward and generate.

The prompt goes directly before each row's first real token, so a right-padded row becomes
(prompt, text, padding) and a left-padded row (padding, prompt, text): padding stays where the
caller put it and every row's text keeps its relative layout. Position ids are counted over
real tokens (`lm.scoring.positions_from_mask`), so the prompt takes positions 0..T-1 and the
text follows, whatever the padding side. Works through `get_input_embeddings()` and
`inputs_embeds`, which every HF causal LM supports.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch

from lm.scoring import GREEDY, positions_from_mask


def first_real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's first real (mask = 1) token: [B]. Every row needs one."""
    if not bool(attention_mask.bool().any(dim=1).all()):
        raise ValueError("Every row needs at least one real token to prepend a prompt to.")
    return attention_mask.long().argmax(dim=1)


def prepend_prompts(
    embeds: torch.Tensor, attention_mask: torch.Tensor, prompts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert `prompts` [B, T, d] before each row's first real token of `embeds` [B, L, d].

    Returns (embeds [B, T+L, d], attention_mask [B, T+L]); differentiable in `prompts`.
    """
    batch, length, width = embeds.shape
    prompt_length = prompts.shape[1]
    first = first_real_positions(attention_mask)[:, None]  # [B, 1]
    position = torch.arange(length + prompt_length, device=embeds.device)[None, :]  # [1, T+L]
    in_prompt = (position >= first) & (position < first + prompt_length)  # [B, T+L]
    text_index = torch.where(position < first, position, position - prompt_length).clamp(0, length - 1)
    prompt_index = (position - first).clamp(0, prompt_length - 1)
    text = embeds.gather(1, text_index[..., None].expand(-1, -1, width))
    prompt = prompts.to(embeds.dtype).gather(1, prompt_index[..., None].expand(-1, -1, width))
    combined = torch.where(in_prompt[..., None], prompt, text)
    mask = torch.where(in_prompt, torch.ones_like(text_index), attention_mask.gather(1, text_index))
    return combined, mask.to(attention_mask.dtype)


def text_positions(attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Where each input position landed after `prepend_prompts`: [B, L] indices into T+L."""
    first = first_real_positions(attention_mask)[:, None]
    position = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None, :]
    return position + prompt_length * (position >= first)


def takes_position_ids(model) -> bool:
    """Whether the model's forward accepts position ids (ALiBi-style models do not)."""
    return "position_ids" in inspect.signature(model.forward).parameters


def prompted_forward(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompts: torch.Tensor,
    **forward_kwargs,
):
    """The model's output on `prompts` ⊕ text, with the prompt positions still in the sequence.

    `forward_kwargs` go to the model unchanged (e.g. `logits_to_keep`).
    """
    embeds = model.get_input_embeddings()(input_ids)
    combined, mask = prepend_prompts(embeds, attention_mask, prompts)
    if takes_position_ids(model):
        forward_kwargs["position_ids"] = positions_from_mask(mask)
    return model(inputs_embeds=combined, attention_mask=mask, **forward_kwargs)


def prompted_hidden(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompts: torch.Tensor
) -> torch.Tensor:
    """Final hidden states [B, L, d] aligned with `input_ids` (prompt positions stripped), as
    `LMScorer.forward_hidden` must return them: the model body only, no output head."""
    hidden = prompted_forward(model.base_model, input_ids, attention_mask, prompts).last_hidden_state
    index = text_positions(attention_mask, prompts.shape[1])
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))


def prompted_generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompts: torch.Tensor,
    max_new_tokens: int,
    pad_id: int,
    decoding: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """New token ids [B, <= max_new_tokens] after `prompts` ⊕ a left-padded batch, greedy
    unless `decoding` (keyword arguments of `generate`, see `lm.scoring.decoding_arguments`)
    says otherwise."""
    embeds = model.get_input_embeddings()(input_ids)
    combined, mask = prepend_prompts(embeds, attention_mask, prompts)
    # Given only inputs_embeds, generate() returns just the new tokens for decoder-only models,
    # and derives position ids from the attention mask as it does for input ids.
    return model.generate(
        inputs_embeds=combined,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id,
        **(decoding or GREEDY),
    )
