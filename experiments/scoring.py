"""Score edit requests, and the edited model's health, through a `Scorer` only.

Nothing here knows which family of editor made the edit: a retrieval editor's scorer routes
the same calls through its memory. All teacher-forced pairs of a step go to the scorer in one
call so that it can batch them by length.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from data.requests import EditRequest
from editors.protocol import Applied, ReportsRetrieval
from experiments.records import ModelHealth, RequestResult, RetrievalSummary
from lm.scoring import Scorer, TokenScores
from metrics import efficacy_score, fluency, locality_agreement, retrieval_rates, token_accuracy

# Per request: group name -> the argmax token ids on each probe's ground truth, probe order.
LocalityPredictions = Mapping[str, Sequence[Sequence[int]]]


def locality_predictions(scorer: Scorer, requests: Sequence[EditRequest]) -> list[dict[str, list[list[int]]]]:
    """The scorer's argmax at every ground-truth position of every locality probe."""
    pairs = [(probe.prompt, probe.ground_truth)
             for request in requests for probes in request.locality.values() for probe in probes]
    scores = iter(scorer.score([p for p, _ in pairs], [t for _, t in pairs]))
    return [
        {group: [list(next(scores).argmax_ids) for _ in probes]
         for group, probes in request.locality.items()}
        for request in requests
    ]


def score_requests(
    scorer: Scorer, requests: Sequence[EditRequest], unedited: Sequence[LocalityPredictions]
) -> list[RequestResult]:
    """Efficacy, generality (both conventions) and per-group locality of each request.

    `unedited[i]` holds the unedited model's predictions on request i's locality probes.
    """
    if len(unedited) != len(requests):
        raise ValueError(f"Got {len(requests)} requests but {len(unedited)} unedited predictions.")
    plans = [_ScoringPlan(request) for request in requests]
    pairs = [pair for plan in plans for pair in plan.pairs]
    scores = scorer.score([p for p, _ in pairs], [t for _, t in pairs])
    results, offset = [], 0
    for plan, request, before in zip(plans, requests, unedited):
        results.append(plan.result(scores[offset : offset + len(plan.pairs)], before))
        offset += len(plan.pairs)
    return results


class _ScoringPlan:
    """The (prompt, target) pairs one request needs scored, and how to read them back.

    Order: edit prompt with target_new [and target_true], then each rephrasing likewise, then
    every locality probe with its ground truth, group by group.
    """

    def __init__(self, request: EditRequest):
        self.request = request
        targets = [request.target_new] + ([request.target_true] if request.target_true else [])
        self.per_prompt = len(targets)
        self.pairs = [(prompt, target)
                      for prompt in (request.prompt, *request.rephrase_prompts)
                      for target in targets]
        self.pairs += [(probe.prompt, probe.ground_truth)
                       for probes in request.locality.values() for probe in probes]

    def result(self, scores: Sequence[TokenScores], unedited: LocalityPredictions) -> RequestResult:
        request, step = self.request, self.per_prompt
        prompt_count = 1 + len(request.rephrase_prompts)
        new = list(scores[0 : prompt_count * step : step])
        true = list(scores[1 : prompt_count * step : step]) if step == 2 else None
        probe_scores = iter(scores[prompt_count * step :])
        locality = {}
        for group, probes in request.locality.items():
            edited = [next(probe_scores).argmax_ids for _ in probes]
            locality[group] = locality_agreement(edited, unedited[group])
        has_rephrasings = prompt_count > 1
        return RequestResult(
            record_index=request.metadata.get("index"),
            efficacy_accuracy=token_accuracy(new[:1]),
            efficacy_score=efficacy_score(new[:1], true[:1]) if true else None,
            generality_accuracy=token_accuracy(new[1:]) if has_rephrasings else None,
            generality_score=efficacy_score(new[1:], true[1:]) if true and has_rephrasings else None,
            locality=locality,
        )


def model_health(
    scorer: Scorer,
    applied: Applied,
    requests: Sequence[EditRequest],
    fluency_prompts: int,
    fluency_new_tokens: int,
    perplexity_of: Callable[[Scorer], float] | None,
) -> ModelHealth:
    """Fluency of continuations of the first `fluency_prompts` edit prompts, perplexity after
    the edit (`perplexity_of(scorer)`, or None when switched off) and retrieval outcomes."""
    prompts = [request.prompt for request in requests[:fluency_prompts]]
    texts = scorer.generate(prompts, fluency_new_tokens) if prompts else []
    return ModelHealth(
        fluency=fluency(texts) if texts else None,
        fluency_texts=len(texts),
        perplexity_after=perplexity_of(scorer) if perplexity_of else None,
        retrieval=retrieval_summary(applied, requests),
    )


def retrieval_summary(applied: Applied, requests: Sequence[EditRequest]) -> RetrievalSummary | None:
    """Retrieval outcome shares, if the edit handle can report them; else None.

    The capability is `ReportsRetrieval.retrieval_outcomes(prompts) -> list[EditRequest | None]`:
    for each query, the request whose memory entry it retrieved, or None. Edit prompts and
    rephrasings should retrieve their own request; locality prompts should retrieve nothing.
    Comparing requests (not memory ids) keeps it right across sequential steps, where the
    memory holds entries added by earlier `apply` calls.
    """
    if not isinstance(applied, ReportsRetrieval):
        return None
    queries: list[str] = []
    expected: list[EditRequest | None] = []
    for request in requests:
        for prompt in (request.prompt, *request.rephrase_prompts):
            queries.append(prompt)
            expected.append(request)
        for probes in request.locality.values():
            for probe in probes:
                queries.append(probe.prompt)
                expected.append(None)
    rates = retrieval_rates(list(applied.retrieval_outcomes(queries)), expected)
    return RetrievalSummary(
        correct=_finite_or_none(rates.correct),
        wrong=_finite_or_none(rates.wrong),
        none=_finite_or_none(rates.none),
        unwanted=_finite_or_none(rates.unwanted),
        edit_queries=rates.edit_queries,
        locality_queries=rates.locality_queries,
    )


def _finite_or_none(share: float) -> float | None:
    """`retrieval_rates` marks an absent query kind with NaN; records use None (strict JSON)."""
    return None if math.isnan(share) else share
