"""THE scorer of editscope: every figure of the harness, `tune`, retrieval evaluation and the
READMEs is computed here, through a `Scorer` only, by these definitions.

Per request (an edit with its prompt, rephrasings and locality probes), scored on the model as
it stands after the edit:
- Efficacy (token acc.): on the edit prompt, the fraction of target_new's tokens that are the
  model's argmax when teacher forced (RECIPE, MedREK, EasyEdit).
- Efficacy score: 1 if target_new's mean per-token NLL after the edit prompt is below
  target_true's, else 0 (MEMIT's "score"; `metrics.efficacy_score`, per-token convention).
  None without target_true.
- Generality (token acc. / score): the same on every rephrasing, then the mean over the
  request's rephrasings. None without rephrasings.
- Locality, per probe group: on every probe, the fraction of ground-truth positions where the
  edited model's argmax equals the unedited model's, then the mean over the group's probes.
- Locality score "NS": on every probe of every group, 1 if the probe's ground truth has a lower
  mean per-token NLL than target_new (the probe does not take up the edit's answer), then the
  mean over all probes. None without target_true (the benchmark has no old targets).
Then each figure is the mean over the requests that have it (every request weighs the same,
whatever its number of rephrasings or probes), in `experiments.aggregate`, which also gives
every such mean its 95% bootstrap interval over requests.

Per scoring step, the model's health:
- Fluency: the edit prompts of the run's first `fluency_prompts` requests (in single and
  batch mode spread over the steps that score them) are continued by seeded top-k sampling
  (k = 5) to exactly `fluency_new_tokens` new tokens (`lm.scoring.TopKSampling`), and each
  prompt + continuation gets its n-gram entropy ×100 (`metrics.fluency`); Flu is their mean.
- Perplexity: of held-out WikiText-2 pieces, each scored after its preceding words
  (`experiments.heldout`), tokens pooled; the change against the unedited model gets a
  paired bootstrap interval over pieces.
- Retrieval outcomes, when the edit handle reports them.

Nothing here knows which family of editor made the edit: a retrieval editor's scorer routes
the same calls (scoring and generation) through retrieval and injection. All teacher-forced
pairs of a step go to the scorer in one call so that it can batch them by length.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from data.requests import EditRequest
from editors.protocol import Applied, ReportsRetrieval
from experiments.heldout import HeldoutText, PieceLosses, heldout_losses
from experiments.records import FluencySample, ModelHealth, RequestResult, RetrievalSummary, Settings
from lm.scoring import Scorer, TokenScores, TopKSampling
from metrics import (
    efficacy_score, locality_agreement, perplexity_change_interval, retrieval_rates, text_fluency,
    token_accuracy,
)

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
    every locality probe with its ground truth, group by group, then (with target_true) every
    probe again with target_new, for NS.
    """

    def __init__(self, request: EditRequest):
        self.request = request
        targets = [request.target_new] + ([request.target_true] if request.target_true else [])
        self.per_prompt = len(targets)
        self.pairs = [(prompt, target)
                      for prompt in (request.prompt, *request.rephrase_prompts)
                      for target in targets]
        probes = [probe for group in request.locality.values() for probe in group]
        self.pairs += [(probe.prompt, probe.ground_truth) for probe in probes]
        if request.target_true:
            self.pairs += [(probe.prompt, request.target_new) for probe in probes]

    def result(self, scores: Sequence[TokenScores], unedited: LocalityPredictions) -> RequestResult:
        request, step = self.request, self.per_prompt
        prompt_count = 1 + len(request.rephrase_prompts)
        new = list(scores[0 : prompt_count * step : step])
        true = list(scores[1 : prompt_count * step : step]) if step == 2 else None
        probe_count = sum(len(probes) for probes in request.locality.values())
        truth_scores = scores[prompt_count * step : prompt_count * step + probe_count]
        probe_scores = iter(truth_scores)
        locality = {}
        for group, probes in request.locality.items():
            edited = [next(probe_scores).argmax_ids for _ in probes]
            locality[group] = locality_agreement(edited, unedited[group])
        taken_up = scores[prompt_count * step + probe_count :]
        has_rephrasings = prompt_count > 1
        return RequestResult(
            record_index=request.metadata.get("index"),
            efficacy_accuracy=token_accuracy(new[:1]),
            efficacy_score=efficacy_score(new[:1], true[:1]) if true else None,
            generality_accuracy=token_accuracy(new[1:]) if has_rephrasings else None,
            generality_score=efficacy_score(new[1:], true[1:]) if true and has_rephrasings else None,
            locality=locality,
            locality_score=(efficacy_score(truth_scores, taken_up)
                            if true and probe_count else None),
        )


def model_health(
    scorer: Scorer,
    applied: Applied,
    requests: Sequence[EditRequest],
    fluency_prompts: Sequence[str],
    settings: Settings,
    seed: int,
    heldout: HeldoutText | None = None,
    losses_before: PieceLosses | None = None,
) -> ModelHealth:
    """Fluency of sampled continuations of `fluency_prompts` (seeded with `seed`), perplexity
    of `heldout` after the edit with its change against `losses_before` (both None when
    perplexity is off), and the retrieval outcomes of `requests`."""
    samples = fluency_samples(scorer, fluency_prompts, settings, seed)
    losses = heldout_losses(scorer, heldout) if heldout is not None else None
    return ModelHealth(
        fluency=sum(s.fluency for s in samples) / len(samples) if samples else None,
        fluency_texts=len(samples),
        perplexity_after=losses.perplexity if losses else None,
        retrieval=retrieval_summary(applied, requests),
        fluency_samples=samples,
        perplexity_change_interval=(
            perplexity_change_interval(losses_before.nll, losses.nll, losses.tokens, seed)
            if losses and losses_before else None),
    )


def fluency_samples(scorer: Scorer, prompts: Sequence[str], settings: Settings,
                    seed: int) -> tuple[FluencySample, ...]:
    """Each prompt continued by `settings.fluency_new_tokens` new tokens (top-k sampling with
    `settings.fluency_top_k`, or greedy until EOS when it is 0) and scored as prompt +
    continuation."""
    if not prompts:
        return ()
    sampling = TopKSampling(settings.fluency_top_k, seed) if settings.fluency_top_k else None
    found = scorer.continuations(prompts, settings.fluency_new_tokens, sampling)
    return tuple(FluencySample(prompt, c.text, len(c.token_ids), 100 * text_fluency(f"{prompt} {c.text}"))
                 for prompt, c in zip(prompts, found))


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
