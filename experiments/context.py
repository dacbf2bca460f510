"""Refusing inputs longer than the model's context, naming the record.

A prompt plus its target that does not fit the model's positions cannot be scored or edited
faithfully (a model with learned positions fails outright, others silently degrade), and a
very long one would also make every step slow. So every text a run will feed the model
(the edit prompt and each rephrasing with the new and the true target, each locality probe
with its answer) is measured once, before any costly step, and the first one too long is
refused with one sentence naming its record.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from data.requests import EditRequest, EditRequestError


def context_limit(model: Any) -> int | None:
    """Positions the model can attend over (`config.max_position_embeddings`), if it says."""
    limit = getattr(model.config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def check_context(requests: Sequence[EditRequest], tok: Any, model: Any) -> None:
    """Raise EditRequestError naming the first request with a text longer than the context."""
    limit = context_limit(model)
    if limit is None or not requests:
        return
    texts = [(index, what, prompt, target) for index, request in enumerate(requests)
             for what, prompt, target in _texts(request)]
    # One tokenizer call for all prompts and one for all targets (as the scorer encodes them).
    prompts = tok([prompt for _, _, prompt, _ in texts])["input_ids"]
    targets = tok([" " + target.lstrip() for *_, target in texts], add_special_tokens=False)["input_ids"]
    for (index, what, _, _), prompt_ids, target_ids in zip(texts, prompts, targets):
        tokens = len(prompt_ids) + len(target_ids)
        if tokens > limit:
            raise EditRequestError(
                f"{_name(requests[index], index)}: its {what} and target are {tokens:,} tokens, longer "
                f"than the model's context of {limit:,}; shorten the record or leave it out.")


def _texts(request: EditRequest) -> Iterator[tuple[str, str, str]]:
    targets = [request.target_new] + ([request.target_true] if request.target_true else [])
    for target in targets:
        yield "prompt", request.prompt, target
        for rephrasing in request.rephrase_prompts:
            yield "rephrased prompt", rephrasing, target
    for group, probes in request.locality.items():
        for probe in probes:
            yield f"locality probe ({group})", probe.prompt, probe.ground_truth


def _name(request: EditRequest, index: int) -> str:
    record = request.metadata.get("index")
    source = request.metadata.get("benchmark")
    if record is None:
        return f"Request {index}"
    return f"Record {record}" + (f" ({source})" if source else "")
