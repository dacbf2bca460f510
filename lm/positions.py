"""Token positions the editors read keys at and scoring reads logits at.

All functions assume right padding and derive positions from the attention mask, never from
sequence lengths of a left-padded batch (a silent pitfall of the reference code).
"""

from __future__ import annotations

from typing import Sequence

import torch

from lm.errors import UsageError


class SubjectNotFound(UsageError):
    """The subject span does not occur in the prompt."""


def subject_last_token(tok, prompt: str, subject: str) -> int:
    """Index, in `tok(prompt)`, of the token holding the last character of the subject's
    first occurrence (the MEMIT `subject_last` fact token)."""
    start = prompt.find(subject)
    if start < 0 or not subject:
        raise SubjectNotFound(f"Subject {subject!r} does not occur in prompt {prompt!r}.")
    last_char = start + len(subject) - 1
    encoding = tok(prompt, return_offsets_mapping=True)
    for index, (begin, end) in enumerate(encoding["offset_mapping"]):
        if begin <= last_char < end:
            return index
    raise SubjectNotFound(f"No token of {prompt!r} covers the end of subject {subject!r}.")


def last_prompt_token(tok, prompt: str) -> int:
    """Index of the prompt's last token (used when a record has no subject span)."""
    return len(tok(prompt)["input_ids"]) - 1


def key_token_index(tok, prompt: str, subject: str | None, key_token: str) -> int:
    """Position of the key for one prompt: `subject_last` (falls back to the last prompt
    token when there is no subject) or `prompt_last`."""
    if key_token == "subject_last" and subject is not None:
        return subject_last_token(tok, prompt, subject)
    if key_token in ("subject_last", "prompt_last"):
        return last_prompt_token(tok, prompt)
    raise ValueError(f"key_token must be 'subject_last' or 'prompt_last', not {key_token!r}.")


def last_real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the last non-padding token."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.bool() * positions).amax(dim=1)


def right_padded(tok, texts: Sequence[str], device=None) -> dict[str, torch.Tensor]:
    """Tokenise `texts` into one right-padded batch without changing the tokenizer."""
    encoded = [tok(text)["input_ids"] for text in texts]
    width = max(len(ids) for ids in encoded)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
