"""Seeded batch builders, CounterFact relation inference and the batch validator."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from data.batches import (
    BatchError, natural_group_batch, natural_same_subject_groups, random_batch,
    same_and_distinct_subject_sets, validate_batch,
)
from data.benchmarks import load_benchmark
from data.relations import infer_relations, prompt_template
from data.requests import EditRequest, LocalityProbe


@pytest.fixture(scope="module")
def counterfact_test():
    return load_benchmark("counterfact", "test")


@pytest.fixture(scope="module")
def counterfact_all(counterfact_test):
    return load_benchmark("counterfact", "train") + counterfact_test


@pytest.fixture(scope="module")
def relations(counterfact_all):
    return infer_relations(counterfact_all)


def request(prompt, target, locality=(), rephrase=(), subject=None):
    return EditRequest(
        prompt=prompt, target_new=target, subject=subject, rephrase_prompts=tuple(rephrase),
        locality={"default": tuple(LocalityProbe(p, "x") for p in locality)},
    )


def test_random_batch_depends_only_on_the_seed(counterfact_test):
    state = random.getstate()
    first = random_batch(counterfact_test, 50, seed=1)
    assert random.getstate() == state  # the global generator is neither used nor moved
    assert first == random_batch(counterfact_test, 50, seed=1)
    assert first != random_batch(counterfact_test, 50, seed=2)
    assert len({r.metadata["index"] for r in first}) == 50


@pytest.mark.parametrize("n", [0, -1, 10001])
def test_random_batch_refuses_sizes_out_of_range(counterfact_test, n):
    with pytest.raises(BatchError, match=f"Cannot draw {n} from 10000 requests"):
        random_batch(counterfact_test, n, seed=0)


def test_relations_are_inferred_close_to_the_published_count(counterfact_test, relations):
    # BENCHMARKS.md: about 34 relations with 213 templates (the test split's count). Train
    # adds 5 templates. Relations sharing a template merge (instrument / sport / position /
    # genre share "{} plays"; origin / formation place / owner share "{} from"), so 24 remain.
    assert len(relations.relation_of_template) == 218
    assert len(relations.relation_names) == 24
    # From test alone, 213 templates; the record-label relation's linking neighbourhood
    # prompts are only in train, so it stays split in four pieces (27 groups).
    assert len(infer_relations(counterfact_test).relation_names) == 27
    mother_tongue = relations.relation_of(counterfact_test[0])
    assert relations.relation_of_template["{} is a native speaker of"] == mother_tongue
    assert relations.relation_of_template["The capital of {} is"] != mother_tongue


def test_prompt_template_cuts_out_the_subject(counterfact_test):
    assert prompt_template(counterfact_test[0]) == "The mother tongue of {} is"


def test_same_and_distinct_subject_sets_pair_the_same_records(counterfact_test, relations):
    pair = same_and_distinct_subject_sets(counterfact_test, 20, seed=3, relations=relations)
    assert len(pair.same_subject) == len(pair.distinct_subject) == 20
    for same, distinct in zip(pair.same_subject, pair.distinct_subject):
        assert same.metadata["index"] == distinct.metadata["index"]
        assert same.target_new == distinct.target_new
        assert same.prompt == distinct.prompt.replace(distinct.subject, "John Smith")
        assert same.metadata["original_subject"] == distinct.subject
        assert same.locality == distinct.locality
        assert not same.problems()
    assert {r.subject for r in pair.same_subject} == {"John Smith"}
    assert len({r.subject for r in pair.distinct_subject}) == 20
    assert len(set(pair.relations)) == 20
    assert [relations.relation_of(r) for r in pair.distinct_subject] == list(pair.relations)


def test_subject_sets_are_seeded_and_capped_at_the_relation_count(counterfact_test, relations):
    build = lambda n, seed: same_and_distinct_subject_sets(  # noqa: E731
        counterfact_test, n, seed, subject="Ann Lee", relations=relations)
    assert build(10, 5) == build(10, 5)
    assert build(10, 5).distinct_subject != build(10, 6).distinct_subject
    assert len(build(24, 0).same_subject) == 24
    with pytest.raises(BatchError, match="Cannot draw 25 from 24 relations"):
        build(25, 0)


def test_subject_sets_need_subject_spans():
    with pytest.raises(BatchError, match="Request 0 has no subject span"):
        same_and_distinct_subject_sets([request("What treats gout?", "x")], 1, seed=0)


def test_natural_groups_match_the_published_counts(counterfact_all):
    sizes = [len(group) for group in natural_same_subject_groups(counterfact_all).values()]
    assert (len(sizes), sum(s >= 5 for s in sizes), sum(s >= 10 for s in sizes)) == (933, 40, 6)


def test_natural_group_batch_is_made_of_whole_groups(counterfact_all):
    groups = natural_same_subject_groups(counterfact_all)
    batch = natural_group_batch(counterfact_all, 101, seed=4)
    assert len(batch) == 101
    for subject, count in Counter(r.subject for r in batch).items():
        assert count == len(groups[subject]) and 2 <= count <= 5
    assert batch == natural_group_batch(counterfact_all, 101, seed=4)
    assert batch != natural_group_batch(counterfact_all, 101, seed=5)


def test_natural_group_batch_refuses_impossible_sizes(counterfact_all):
    with pytest.raises(BatchError, match="cannot add up to exactly 1 request"):
        natural_group_batch(counterfact_all, 1, seed=0, min_size=2)
    with pytest.raises(BatchError, match="Cannot draw 2028 from 2027"):
        natural_group_batch(counterfact_all, 2028, seed=0)
    with pytest.raises(BatchError, match="cannot add up to exactly 3"):
        natural_group_batch([request(f"{s} is", "x", subject=s) for s in "aabb"], 3, seed=0)


def test_validator_finds_a_constructed_locality_overlap():
    batch = [
        request("Ada lives in", "Rome", locality=["Bo lives in"]),
        request("Bo lives in", "Oslo", locality=["Cy lives in"]),  # edits Ada's locality probe
        request("Cy speaks", "Greek", locality=["Di speaks"], rephrase=["Di speaks"]),  # own probe
    ]
    flagged = validate_batch(batch, "flag")
    assert flagged.locality_overlap_indices == (1,)
    assert flagged.self_overlap_indices == (2,)
    assert flagged.requests == tuple(batch)
    assert flagged.ceiling.locality == {"default": pytest.approx(1 / 3)}
    assert flagged.ceiling.efficacy == 1.0
    assert "2 of 3 locality probes" in flagged.ceiling.sentence
    excluded = validate_batch(batch, "exclude")
    assert excluded.kept_indices == (0,) and excluded.locality_overlaps == 1
    assert excluded.ceiling.locality == {"default": 1.0}


def test_validator_finds_a_constructed_contradiction():
    batch = [
        request("Ada speaks", "Greek"),
        request("Bo speaks", "Latin"),
        request("Ada speaks", "Welsh"),
        request("Ada speaks", "Greek"),
    ]
    flagged = validate_batch(batch)
    assert flagged.contradictory_groups == ((0, 2, 3),)
    assert flagged.contradictory_records == 3
    # Only the records agreeing on one target can all succeed: 3 of 4 at best.
    assert flagged.ceiling.efficacy == pytest.approx(3 / 4)
    assert "\n" not in flagged.ceiling.sentence and "75.0%" in flagged.ceiling.sentence
    excluded = validate_batch(batch, "exclude")
    assert excluded.kept_indices == (0, 1)  # the first record of the group is kept
    assert excluded.ceiling.efficacy == 1.0
    with pytest.raises(ValueError, match="flag or exclude"):
        validate_batch(batch, "drop")


def test_validator_counts_on_medcfpp_test_equal_the_published_ones():
    medcfpp = load_benchmark("medcfpp", "test")
    result = validate_batch(medcfpp, "flag")
    assert result.locality_overlaps == 214  # BENCHMARKS.md: 214
    assert result.contradictory_records == 129  # BENCHMARKS.md: 129 ...
    assert len(result.contradictory_groups) == 58  # ... in 58 same-prompt groups
    assert result.self_overlaps == 0  # MedCF++ removed those
    assert len(validate_batch(medcfpp, "exclude").requests) == 507


def test_validator_finds_medcf_self_overlaps_that_medcfpp_removed():
    # BENCHMARKS.md: MedCF++ drops 47 test records whose edit prompt is their own locality prompt.
    assert validate_batch(load_benchmark("medcf", "test")).self_overlaps == 47


def test_unconfounded_batch_is_clean_full_sized_and_seeded():
    from data.batches import unconfounded_batch

    medcfpp = load_benchmark("medcfpp", "test")
    batch = unconfounded_batch(medcfpp, 100, seed=0)
    found = validate_batch(batch)
    assert len(batch) == 100 and len({id(r) for r in batch}) == 100
    assert (found.locality_overlaps, found.self_overlaps, found.contradictory_records) == (0, 0, 0)
    assert found.ceiling.efficacy == 1.0 and set(found.ceiling.locality.values()) == {1.0}
    # The plain random batch of the same seed is confounded: the builder did real work.
    assert validate_batch(random_batch(medcfpp, 100, seed=0)).locality_overlaps > 0
    assert unconfounded_batch(medcfpp, 100, seed=0) == batch


def test_unconfounded_batch_says_how_many_are_possible():
    from data.batches import unconfounded_batch

    medcfpp = load_benchmark("medcfpp", "test")
    by_prompt = {}
    for request in medcfpp:
        by_prompt.setdefault(request.prompt, []).append(request)
    pair = next(group[:2] for group in by_prompt.values()
                if len(group) > 1 and group[0].target_new != group[1].target_new)
    with pytest.raises(BatchError, match="Only 1 of the 2 requests"):
        unconfounded_batch(pair, 2, seed=0)
