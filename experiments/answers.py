"""Answers of an unedited and an edited model to the same question, side by side (`ask`).

Everything goes through the two `Scorer`s of an `EditedModel`: greedy continuations through
`generate` (the path the fluency metric uses), sampled ones through `forward_hidden` one token
at a time (so a retrieval editor's scorer retrieves and injects exactly as when it scores), and
the new target's probability through `score`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from experiments.saved_edits import EditedModel
from lm.scoring import LMScorer, output_logits


@dataclass(frozen=True)
class Continuations:
    greedy: str
    sampled: tuple[str, ...]
    target_probability: float | None  # P(target | prompt), teacher forced; None without a target


@dataclass(frozen=True)
class Answer:
    prompt: str
    edit: Mapping[str, Any] | None  # the edit this prompt reaches (retrieved, or asked verbatim)
    target: str | None  # whose probability is reported: --target, else the edit's target_new
    unedited: Continuations
    edited: Continuations

    def to_dict(self) -> dict[str, Any]:
        def side(found: Continuations) -> dict[str, Any]:
            return {"greedy": found.greedy, "sampled": list(found.sampled),
                    "target_probability": found.target_probability}

        return {"prompt": self.prompt, "edit": None if self.edit is None else dict(self.edit),
                "target": self.target, "unedited": side(self.unedited), "edited": side(self.edited)}


def answer(model: EditedModel, prompt: str, max_new_tokens: int = 20, samples: int = 1,
           temperature: float = 0.8, seed: int = 0, target: str | None = None) -> Answer:
    """Greedy and `samples` sampled continuations of `prompt` by both models, and P(target)
    before and after (target: the given one, else the new target of the edit it reaches)."""
    edit = model.edit_for(prompt)
    target = target or (edit or {}).get("target_new")

    def continuations(scorer: LMScorer) -> Continuations:
        # The same seed on both sides: the two samples differ only where the models do.
        generator = torch.Generator().manual_seed(seed)
        sampled = tuple(sample(scorer, prompt, max_new_tokens, temperature, generator) for _ in range(samples))
        probability = math.exp(scorer.score([prompt], [target])[0].sum_logprob) if target else None
        return Continuations(scorer.generate([prompt], max_new_tokens)[0], sampled, probability)

    return Answer(prompt, edit, target, continuations(model.unedited), continuations(model.edited))


def sample(scorer: LMScorer, prompt: str, max_new_tokens: int, temperature: float,
           generator: torch.Generator) -> str:
    """One continuation sampled at `temperature`, token by token through the scorer's forward
    pass (no key/value cache: answers are short, and a retrieval scorer sees the whole text)."""
    ids = list(scorer.tok(prompt)["input_ids"])
    new: list[int] = []
    eos = scorer.tok.eos_token_id
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            input_ids = torch.tensor([ids + new], device=scorer.device)
            hidden = scorer.forward_hidden(input_ids, torch.ones_like(input_ids), [prompt])[:, -1]
            probabilities = (output_logits(scorer.model, hidden)[0] / temperature).softmax(-1).cpu()
            token = int(torch.multinomial(probabilities, 1, generator=generator))
            if token == eos:
                break
            new.append(token)
    return scorer.tok.decode(new, skip_special_tokens=True)
