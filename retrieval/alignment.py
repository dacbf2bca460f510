"""Aligned initialisation of MedREK's encoder slots: a linear map from the knowledge encoder's
token states to the LLM's input embedding space, fitted in closed form.

The encoder slots (retrieval/modules.py) are `from_encoder(layer_norm(state))` for the
encoder's last-layer state of each of the statement's last wordpieces. Started from random
weights they carry the target's identity in a basis the LLM cannot read, and training them
through the frozen LLM diverged or did not move (retrieval/README.md). Here `from_encoder`
starts as the ridge regression of the LLM's input embedding of the *aligned* LLM token (the
token whose character span holds the wordpiece's first character) on the normalised state,
fitted on training statements. The untrained prompt is then approximately the LLM's
embeddings of the statement's last T tokens, computed from the knowledge encoder's states
alone: the LLM's embedding table is a fixed regression target at initialisation, and never an
input of the prompt (test `test_medrek_prompts_never_see_the_llm_embeddings_of_the_statement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

# Ridge penalty per training pair (inputs are layer-normalised, unit scale). In a one-off sweep on
# held-out train statements the nearest-token accuracy was flat from 1e-4 to 1e-3 and fell above.
RIDGE = 1e-3
_BATCH = 64  # statements per encoder call
_SCORED_PAIRS = 1024  # pairs scored against the whole vocabulary at once


@dataclass(frozen=True)
class AlignedPairs:
    """Normalised encoder states [N, h] of wordpieces, the ids [N] of their aligned LLM tokens,
    and each wordpiece's position counted from its statement's end (0 = last) [N]."""

    states: torch.Tensor
    token_ids: torch.Tensor
    from_end: torch.Tensor


def aligned_token(spans: Sequence[tuple[int, int]], char: int) -> int | None:
    """Index of the LLM token whose character span [start, end) holds `char`; else the first
    token that starts after it (a character the LLM's tokens skip); None past the last token."""
    for index, (start, end) in enumerate(spans):
        if start <= char < end or start > char:
            return index
    return None


def aligned_pairs(encoder, tok, texts: Sequence[str]) -> AlignedPairs:
    """Every non-special wordpiece of `texts` with its layer-normalised last-layer encoder state
    (as the encoder slots see it) and the LLM token it is aligned with by character offsets."""
    states, token_ids, from_end = [], [], []
    with torch.no_grad():
        for start in range(0, len(texts), _BATCH):
            chunk = list(texts[start : start + _BATCH])
            batch = encoder.tokenizer(
                chunk, padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt",
                return_offsets_mapping=True, return_special_tokens_mask=True,
            )
            offsets = batch.pop("offset_mapping")
            special = batch.pop("special_tokens_mask").to(torch.bool)
            hidden = encoder.backbone(input_ids=batch["input_ids"].to(encoder.device),
                                      attention_mask=batch["attention_mask"].to(encoder.device)).last_hidden_state
            hidden = F.layer_norm(hidden.float().cpu(), hidden.shape[-1:])
            ordinary = batch["attention_mask"].to(torch.bool) & ~special
            for row, text in enumerate(chunk):
                llm = tok(text, add_special_tokens=False, return_offsets_mapping=True)
                positions = ordinary[row].nonzero().flatten().tolist()
                for rank, position in enumerate(reversed(positions)):
                    index = aligned_token(llm["offset_mapping"], int(offsets[row, position, 0]))
                    if index is None:
                        continue
                    states.append(hidden[row, position])
                    token_ids.append(llm["input_ids"][index])
                    from_end.append(rank)
    return AlignedPairs(torch.stack(states), torch.tensor(token_ids), torch.tensor(from_end))


def fit_map(pairs: AlignedPairs, embeddings: torch.Tensor, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression of the aligned tokens' LLM embeddings on the states: (weight [d, h],
    bias [d]) such that `states @ weight.T + bias` approximates `embeddings[token_ids]`, scaled
    up to the targets' mean norm.

    Why the scaling: a least-squares map predicts the mean of the tokens a state is ambiguous
    between, which is shorter than a token embedding (about two thirds of its norm on train
    statements); the LLM reads direction *and* size, and in a one-off probe on held-out train
    edits the norm-matched untrained prompt gave the target a lower NLL."""
    inputs = pairs.states.double()
    targets = embeddings[pairs.token_ids].double()
    input_mean, target_mean = inputs.mean(0), targets.mean(0)
    centred = inputs - input_mean
    gram = centred.T @ centred
    penalty = ridge * len(inputs) * torch.eye(gram.shape[0], dtype=gram.dtype)
    weight = torch.linalg.solve(gram + penalty, centred.T @ (targets - target_mean)).T
    bias = target_mean - weight @ input_mean
    scale = targets.norm(dim=-1).mean() / (inputs @ weight.T + bias).norm(dim=-1).mean()
    return (scale * weight).float(), (scale * bias).float()


def nearest_token_accuracy(
    pairs: AlignedPairs, embeddings: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> float:
    """Share of the pairs whose mapped state's nearest LLM input embedding (by cosine) is the
    aligned token."""
    table = F.normalize(embeddings.float(), dim=-1)
    hits = 0
    for start in range(0, len(pairs.states), _SCORED_PAIRS):
        rows = slice(start, start + _SCORED_PAIRS)
        mapped = F.normalize(pairs.states[rows] @ weight.T + bias, dim=-1)
        hits += int(((mapped @ table.T).argmax(-1) == pairs.token_ids[rows]).sum())
    return hits / len(pairs.states)


@dataclass(frozen=True)
class Alignment:
    """What an alignment was fitted on, and how well it maps held-out wordpieces: the share whose
    nearest LLM token is the aligned one, over all wordpieces and over each statement's last T
    (the ones the untrained prompt reads)."""

    pairs: int
    held_out_pairs: int
    accuracy: float
    accuracy_last: float


def align_encoder_slots(
    network, encoder, llm, tok, statements: Sequence[str], held_out: Sequence[str]
) -> Alignment:
    """Set the network's `from_encoder` to the map fitted on `statements`, and measure it on the
    `held_out` statements."""
    projection = getattr(network.prompt_encoder, "from_encoder", None)
    if projection is None:
        raise ValueError("The network has no encoder slots to align; give it encoder tokens.")
    pairs = aligned_pairs(encoder, tok, statements)
    embeddings = llm.get_input_embeddings().weight.detach().float().cpu()
    weight, bias = fit_map(pairs, embeddings)
    with torch.no_grad():
        projection.weight.copy_(weight)
        projection.bias.copy_(bias)
    check = aligned_pairs(encoder, tok, held_out)
    last = check.from_end < network.config.prompt_length
    return Alignment(
        len(pairs.states), len(check.states), nearest_token_accuracy(check, embeddings, weight, bias),
        nearest_token_accuracy(AlignedPairs(check.states[last], check.token_ids[last], check.from_end[last]),
                               embeddings, weight, bias),
    )
