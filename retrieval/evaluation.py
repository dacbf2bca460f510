"""Score a retrieval editor on one batch of edits: efficacy, generality, locality, retrieval.

Everything goes through the editor's `Applied.scorer` (retrieval + injection), exactly as the
suite's metrics see it; retrieval outcomes come from the same store. Efficacy and generality
are teacher-forced target token accuracy (convention (a) of metrics.efficacy); locality is
argmax agreement with the unedited model on each probe's ground truth, per group. The batch is
un-applied afterwards, whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from data.validation import Ceiling, batch_ceiling
from data.requests import EditRequest
from lm.scoring import LMScorer
from metrics.efficacy import token_accuracy
from metrics.locality import locality_by_group, mean_locality
from metrics.retrieval import RetrievalRates, high_similarity_share, retrieval_rates


@dataclass(frozen=True)
class BatchEvaluation:
    """Scores of one applied batch, with what the batch allows at best (`ceiling`)."""

    edits: int
    efficacy: float
    generality: float
    locality: Mapping[str, float]
    retrieval: RetrievalRates  # correct/wrong/none over efficacy + generality queries
    efficacy_retrieval: RetrievalRates  # the same over efficacy queries alone
    key_high_similarity: float  # share of keys with cosine > 0.6 to another key (MedREK Fig. 2c)
    ceiling: Ceiling

    @property
    def locality_mean(self) -> float:
        return mean_locality(self.locality)

    def to_json(self) -> dict:
        return {
            "edits": self.edits,
            "efficacy": self.efficacy,
            "generality": self.generality,
            "locality": dict(self.locality),
            "locality_mean": self.locality_mean,
            "retrieval": vars(self.retrieval),
            "efficacy_retrieval": vars(self.efficacy_retrieval),
            "key_high_similarity": self.key_high_similarity,
            "ceiling": {"efficacy": self.ceiling.efficacy, "locality": dict(self.ceiling.locality),
                        "sentence": self.ceiling.sentence},
        }


def distinct_key_share(requests: Sequence[EditRequest], key_text) -> float:
    """Best reachable correct-retrieval rate when edits with the same key text (`key_text(r)`)
    share one key: per group of identical keys, one edit at most can be told apart."""
    return len({key_text(request) for request in requests}) / len(requests)


def locality_probes(requests: Sequence[EditRequest]) -> dict[str, list[tuple[str, str]]]:
    """(prompt, ground truth) of every locality probe of the batch, per group."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for request in requests:
        for group, probes in request.locality.items():
            groups.setdefault(group, []).extend((probe.prompt, probe.ground_truth) for probe in probes)
    return groups


def locality_argmax(scorer, requests: Sequence[EditRequest]) -> dict[str, list[tuple[int, ...]]]:
    """A scorer's argmax tokens on each locality probe's ground truth, per group."""
    return {
        group: [scores.argmax_ids for scores in scorer.score([p for p, _ in pairs], [t for _, t in pairs])]
        for group, pairs in locality_probes(requests).items()
    }


def unedited_locality_argmax(model, tok, requests: Sequence[EditRequest]) -> dict[str, list[tuple[int, ...]]]:
    """The unedited model's `locality_argmax` (compute once, reuse for every editor)."""
    return locality_argmax(LMScorer(model, tok), requests)


def evaluate_batch(
    editor,
    model,
    tok,
    requests: Sequence[EditRequest],
    unedited: Mapping[str, list[tuple[int, ...]]] | None = None,
) -> BatchEvaluation:
    """Apply `requests` with `editor`, score them, and undo. `unedited` is
    `unedited_locality_argmax(model, tok, requests)`, computed here when not given."""
    if unedited is None:
        unedited = unedited_locality_argmax(model, tok, requests)
    applied = editor.apply(model, tok, requests)
    try:
        scorer = applied.scorer
        efficacy = token_accuracy(scorer.score([r.prompt for r in requests], [r.target_new for r in requests]))
        rephrased = [(prompt, r.target_new) for r in requests for prompt in r.rephrase_prompts]
        generality = (
            token_accuracy(scorer.score([p for p, _ in rephrased], [t for _, t in rephrased]))
            if rephrased else float("nan")
        )
        locality = locality_by_group(locality_argmax(scorer, requests), unedited)
        retrieval, efficacy_retrieval, key_similarity = _retrieval_diagnostics(applied, requests)
        return BatchEvaluation(
            edits=len(requests),
            efficacy=efficacy,
            generality=generality,
            locality=locality,
            retrieval=retrieval,
            efficacy_retrieval=efficacy_retrieval,
            key_high_similarity=key_similarity,
            ceiling=batch_ceiling(requests),
        )
    finally:
        applied.undo()


def evaluate_retrieval(editor, model, tok, requests: Sequence[EditRequest]) -> RetrievalRates:
    """Retrieval outcomes alone (no LLM scoring): edit + rephrase queries and locality probes."""
    applied = editor.apply(model, tok, requests)
    try:
        return _retrieval_diagnostics(applied, requests)[0]
    finally:
        applied.undo()


def _retrieval_diagnostics(
    applied, requests: Sequence[EditRequest]
) -> tuple[RetrievalRates, RetrievalRates, float]:
    """(rates over edit + rephrase queries and probes, rates over edit queries alone, key overlap)."""
    prompts = [request.prompt for request in requests]
    rephrased = [(prompt, entry) for request, entry in zip(requests, applied.ids)
                 for prompt in request.rephrase_prompts]
    probe_prompts = [prompt for pairs in locality_probes(requests).values() for prompt, _ in pairs]
    queries = prompts + [prompt for prompt, _ in rephrased] + probe_prompts
    expected = list(applied.ids) + [entry for _, entry in rephrased] + [None] * len(probe_prompts)
    retrieved = applied.retrieve(queries).retrieved
    store = applied.store
    with torch.no_grad():
        keys = store.network.keys(store.encoder.encode([store.network.key_text(r) for r in requests]))
    return (
        retrieval_rates(retrieved, expected),
        retrieval_rates(retrieved[: len(prompts)], expected[: len(prompts)]),
        high_similarity_share(keys),
    )
