"""Hand-computed per-request scores and their aggregation into Eff / Gen / Loc / Average."""

from __future__ import annotations

import pytest

from data.requests import EditRequest, LocalityProbe
from experiments.aggregate import aggregate, combine_health, combine_retrieval
from experiments.records import ModelHealth, RequestResult, RetrievalSummary
from experiments.scoring import locality_predictions, retrieval_summary, score_requests
from lm.scoring import TokenScores

NO_HEALTH = ModelHealth(fluency=None, fluency_texts=0, perplexity_after=None, retrieval=None)


class TableScorer:
    """A Scorer whose answers are fixed in a table keyed by (prompt, target); counts calls."""

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def score(self, prompts, targets):
        self.calls += 1
        return [self.table[(p, t)] for p, t in zip(prompts, targets)]

    def generate(self, prompts, max_new_tokens):
        raise AssertionError("not used here")


def scores(argmax, logprobs, target=None):
    target = target or tuple(range(1, len(argmax) + 1))
    return TokenScores(tuple(target), tuple(logprobs), tuple(argmax))


FULL = EditRequest(
    prompt="P", target_new="new", target_true="old", rephrase_prompts=("R1", "R2"),
    locality={"td": (LocalityProbe("L1", "gt1"),),
              "em": (LocalityProbe("L2", "gt2"), LocalityProbe("L3", "gt3"))},
    metadata={"index": 7},
)
BARE = EditRequest(prompt="Q", target_new="new", locality={"td": (LocalityProbe("L4", "gt4"),)})

TABLE = {
    # Efficacy score compares mean token log P (per-token NLL), as MEMIT's "score".
    ("P", "new"): scores((1, 9), (-1.0, -1.0), target=(1, 2)),  # accuracy 1/2, mean -1
    ("P", "old"): scores((4,), (-3.0,)),                          # -1 > -3: efficacy score 1
    ("R1", "new"): scores((1, 2), (-2.0, -2.0), target=(1, 2)),   # accuracy 1, mean -2
    ("R1", "old"): scores((4,), (-1.0,)),                         # -2 < -1: lost
    ("R2", "new"): scores((0, 0), (-0.5, -0.5), target=(1, 2)),   # accuracy 0, mean -0.5
    ("R2", "old"): scores((4,), (-1.5,)),                         # -0.5 > -1.5: won, though
                                                                  # jointly -1 < -1.5
    ("L1", "gt1"): scores((5, 6, 7), (0.0, 0.0, 0.0)),
    ("L2", "gt2"): scores((1,), (0.0,)),
    ("L3", "gt3"): scores((2, 3), (0.0, 0.0)),
    ("Q", "new"): scores((1, 2, 3), (0.0, 0.0, 0.0)),             # accuracy 1
    ("L4", "gt4"): scores((8,), (0.0,)),
    # NS: does each probe still prefer its ground truth (mean log P 0) to target_new?
    ("L1", "new"): scores((1, 2), (-1.0, -1.0), target=(1, 2)),  # yes
    ("L2", "new"): scores((1,), (0.0,)),                          # tie: no
    ("L3", "new"): scores((1, 2), (-0.5, -0.5), target=(1, 2)),  # yes
}
UNEDITED = [
    {"td": [[5, 6, 0]], "em": [[1], [9, 3]]},  # td 2/3; em (1 + 1/2) / 2 = 3/4
    {"td": [[7]]},                              # td 0
]


def test_request_scores_by_hand():
    scorer = TableScorer(TABLE)
    full, bare = score_requests(scorer, [FULL, BARE], UNEDITED)
    assert scorer.calls == 1  # every pair of the step in one call, so the scorer can batch
    assert full == RequestResult(
        record_index=7, efficacy_accuracy=0.5, efficacy_score=1.0,
        generality_accuracy=0.5, generality_score=0.5,
        locality={"td": pytest.approx(2 / 3), "em": 0.75}, locality_score=pytest.approx(2 / 3),
    )
    # No target_true: no efficacy score; no rephrasings: no generality at all.
    assert bare == RequestResult(None, 1.0, None, None, None, {"td": 0.0})


def test_unedited_predictions_follow_request_group_and_probe_order():
    predictions = locality_predictions(TableScorer(TABLE), [FULL, BARE])
    assert predictions == [{"td": [[5, 6, 7]], "em": [[1], [2, 3]]}, {"td": [[8]]}]


def test_aggregate_by_hand():
    results = [
        RequestResult(0, 1.0, 1.0, 0.5, 0.0, {"td": 1.0, "em": 0.5}),
        RequestResult(1, 0.5, 0.0, None, None, {"td": 0.5}),
        RequestResult(2, 0.25, None, 1.0, None, {"td": 0.0, "em": 1.0}),
    ]
    result = aggregate(results, [NO_HEALTH])
    assert result.requests == 3
    assert result.efficacy_accuracy == pytest.approx(1.75 / 3)   # every request
    assert result.efficacy_score == pytest.approx(0.5)           # the two with target_true
    assert result.generality_accuracy == pytest.approx(0.75)     # the two with rephrasings
    assert result.generality_score == pytest.approx(0.0)
    assert result.locality == pytest.approx({"td": 0.5, "em": 0.75})  # em: requests 0 and 2
    assert result.locality_mean == pytest.approx(0.625)
    # ((7/12 + 3/4) / 2 + 5/8) / 2 = (2/3 + 5/8) / 2 = 31/48
    assert result.average == pytest.approx(31 / 48)
    # Every figure carries its bootstrap interval over the three requests, around its value.
    for name in ("efficacy_accuracy", "efficacy_score", "generality_accuracy", "locality.td",
                 "locality_mean", "average"):
        low, high = result.intervals[name]
        value = result.locality["td"] if name == "locality.td" else getattr(result, name)
        assert low <= value <= high and low < high
    assert result.intervals["efficacy_accuracy"] == (0.25, 1.0)  # the extremes of 3 requests
    assert aggregate(results, [NO_HEALTH]).intervals == result.intervals  # seeded


def test_identical_requests_give_a_zero_width_interval():
    results = [RequestResult(i, 0.5, None, 0.5, None, {"td": 1.0}) for i in range(5)]
    intervals = aggregate(results, [NO_HEALTH]).intervals
    assert intervals["efficacy_accuracy"] == pytest.approx((0.5, 0.5))
    assert intervals["average"] == pytest.approx((0.75, 0.75))


def test_average_reproduces_medrek_table_2_memit_row():
    # MedREK Table 2, MedCF++, MEMIT: Eff 76.36, Gen 66.42, TD 87.91, EM 76.74, SS 87.26,
    # TS 83.52, Avg 77.62 (printed rounded).
    row = RequestResult(0, 0.7636, None, 0.6642, None,
                        {"td": 0.8791, "em": 0.7674, "ss": 0.8726, "ts": 0.8352})
    result = aggregate([row], [NO_HEALTH])
    assert round(100 * result.average, 2) == 77.62
    assert result.locality_mean == pytest.approx(0.838575)


def test_average_is_undefined_without_generality():
    result = aggregate([RequestResult(0, 1.0, None, None, None, {"default": 1.0})], [NO_HEALTH])
    assert result.average is None and result.locality_mean == 1.0


def test_health_pools_fluency_by_text_and_averages_perplexity_over_steps():
    steps = [
        ModelHealth(500.0, 2, 10.0, None),
        ModelHealth(600.0, 6, 20.0, None),
        ModelHealth(None, 0, 30.0, None),  # generation switched off for this step
    ]
    health = combine_health(steps)
    assert health.fluency == pytest.approx((500 * 2 + 600 * 6) / 8)  # 575
    assert health.fluency_texts == 8
    assert health.perplexity_after == pytest.approx(20.0)
    assert health.retrieval is None


def test_retrieval_shares_pool_by_query_counts():
    first = RetrievalSummary(0.5, 0.25, 0.25, None, edit_queries=4, locality_queries=0)
    second = RetrievalSummary(1.0, 0.0, 0.0, 0.5, edit_queries=2, locality_queries=4)
    pooled = combine_retrieval([first, second])
    assert pooled.correct == pytest.approx(4 / 6)  # (0.5·4 + 1·2) / 6
    assert pooled.wrong == pytest.approx(1 / 6)
    assert pooled.none == pytest.approx(1 / 6)
    assert pooled.unwanted == pytest.approx(0.5)   # only the second had locality queries
    assert (pooled.edit_queries, pooled.locality_queries) == (6, 4)
    assert combine_retrieval([]) is None


def test_retrieval_outcomes_of_an_edit_become_shares():
    first = EditRequest(prompt="PA", target_new="x", rephrase_prompts=("RA",),
                        locality={"default": (LocalityProbe("LA", "y"),)})
    second = EditRequest(prompt="PB", target_new="z", locality={"default": (LocalityProbe("LB", "y"),)})

    class RetrievingEdit:  # the ReportsRetrieval capability of a retrieval edit
        fetched = {"PA": first, "RA": second, "PB": None, "LA": None, "LB": first}

        def retrieval_outcomes(self, prompts):
            return [self.fetched[prompt] for prompt in prompts]

        def retrieved_entries(self, prompts):
            return [None if r is None else {"prompt": r.prompt, "target_new": r.target_new, "subject": r.subject}
                    for r in self.retrieval_outcomes(prompts)]

    summary = retrieval_summary(RetrievingEdit(), [first, second])
    # Edit queries PA (own entry), RA (another's), PB (nothing); locality LA (ok), LB (unwanted).
    assert summary == RetrievalSummary(correct=pytest.approx(1 / 3), wrong=pytest.approx(1 / 3),
                                       none=pytest.approx(1 / 3), unwanted=0.5,
                                       edit_queries=3, locality_queries=2)
    assert retrieval_summary(object(), [first]) is None  # no hook: nothing to report
