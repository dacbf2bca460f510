"""The "Which method?" section follows the numbers, and says so when they cannot decide."""

from __future__ import annotations

from test_report_fixtures import run, scenario, sequential

from experiments.report import DISTINCT_SUBJECT, SAME_SUBJECT, Report, Thresholds
from experiments.report.content import build_document
from experiments.report.markdown import markdown


def which_method(report: Report, thresholds: Thresholds = Thresholds()) -> str:
    text = markdown(build_document(report, thresholds))  # plots are not drawn for Markdown
    section = text[text.index("## Which method?"):]
    end = section.find("\n## ", 1)
    return section if end < 0 else section[:end]


def bullet(text: str, lead: str, setting: str | None = None) -> str:
    if setting is not None:
        text = text[text.index(f"### Setting: {setting}"):]
    return next(line for line in text.splitlines() if line.startswith(f"- **{lead}:**"))


def test_the_locality_recommendation_follows_the_numbers():
    first = bullet(which_method(scenario(memit_locality=0.97, merge_locality=0.90)),
                   "Keeps locality", "medcfpp, batch of 10")
    swapped = bullet(which_method(scenario(memit_locality=0.90, merge_locality=0.97)),
                     "Keeps locality", "medcfpp, batch of 10")
    assert first.startswith("- **Keeps locality:** memit, batch of 10: the highest efficacy")
    assert swapped.startswith("- **Keeps locality:** memit-merge, batch of 10: the highest efficacy")
    assert "99.0%" in swapped  # memit-merge's efficacy, the number behind the choice


def test_no_editor_above_the_locality_threshold_is_said_plainly():
    text = which_method(scenario())
    assert ("No editor that edits keeps mean locality ≥ 95.0%; the highest is memit-merge, batch "
            "of 40 at 93.0%" in bullet(text, "Keeps locality", "medcfpp, batch of 40"))
    relaxed = which_method(scenario(), Thresholds(locality=0.9))
    assert "memit-merge, batch of 40: the highest efficacy (token acc.) 92.0%" in relaxed


def test_other_rules_use_measured_values_and_skip_the_unedited_reference():
    text = which_method(scenario())
    assert "recipe, batch of 10: 0.005 s per edit" in bullet(text, "Fastest to edit", "medcfpp, batch of 10")
    assert "unedited" not in "\n".join(
        line for line in text.splitlines()
        if not line.startswith(("Each recommendation", "- **Reference", "- **Edits at all",
                                "- **Best Average")))
    # The unedited Average is always shown as the bar to clear.
    average = bullet(text, "Best Average", "medcfpp, batch of 10")
    assert "The unedited model's Average, the bar to clear, is 51.0%" in average
    assert "memit stays below 90.0% at every batch size (10, 40)" in text
    assert "memit-merge keeps efficacy ≥ 90.0% up to the largest batch tried, 40 (92.0%)" in text
    assert "through step 2 (10 edits); after step 3 (15 edits) it is 70.0%" in text
    assert "the batches cap efficacy at 90.0%, locality TD at 80.0%" in text


def test_leads_inside_the_intervals_are_ties():
    text = which_method(scenario(memit_locality=0.97, merge_locality=0.97))
    line = bullet(text, "Keeps locality", "medcfpp, batch of 10")
    # memit-merge 99.0 ± 3 against memit 88.0 ± 3: separated.
    assert line.startswith("- **Keeps locality:** memit-merge, batch of 10")
    assert "beats the runner-up, memit, batch of 10" in line
    close = Report("compare", {}, (run("memit", eff=0.90, loc={"td": 0.97}),
                                   run("pmet", eff=0.88, loc={"td": 0.97}),
                                   run("unedited", eff=0.02, loc={"td": 1.0})))
    assert "a tie the data do not separate" in bullet(which_method(close), "Keeps locality")


def test_no_recommendation_names_an_editor_within_noise_of_not_editing():
    # "idle" keeps every probe, is the fastest and leaves perplexity alone, but its efficacy
    # (4% ± 3) overlaps the unedited model's (2% ± 3): it must not be recommended for anything.
    runs = (run("idle", eff=0.04, loc={"td": 1.0}, edit_seconds=0.01, ppl_after=20.0),
            run("memit", eff=0.80, loc={"td": 0.96}, edit_seconds=5.0, ppl_after=21.0),
            run("unedited", eff=0.02, loc={"td": 1.0}, edit_seconds=0.0, ppl_after=20.0))
    text = which_method(Report("compare", {}, runs))
    assert "not distinguishable from not editing (or below it): idle, batch of 10" in bullet(
        text, "Edits at all")
    for lead in ("Keeps locality", "Best Average", "Fastest to edit", "Changes perplexity least"):
        assert "idle" not in bullet(text, lead)
        assert bullet(text, lead).startswith(f"- **{lead}:** memit")
    nothing = which_method(Report("compare", {}, runs[:1] + (run("pmet", eff=0.0),) + runs[2:]))
    assert "no run is above it beyond the intervals, so none is recommended" in nothing
    assert "Cannot say: no run in this setting edits." in bullet(nothing, "Fastest to edit")


def test_perplexity_ranks_by_size_among_editors_that_keep_locality():
    runs = (run("ft_l", eff=0.40, loc={"td": 0.33}, ppl_after=19.0),  # lower PPL, poor locality
            run("memit", eff=0.80, loc={"td": 0.96}, ppl_after=20.5),
            run("pmet", eff=0.70, loc={"td": 0.97}, ppl_after=19.2),
            run("unedited", eff=0.02, loc={"td": 1.0}, ppl_after=20.0))
    line = bullet(which_method(Report("compare", {}, runs)), "Changes perplexity least")
    assert line.startswith("- **Changes perplexity least:** memit, batch of 10: perplexity "
                           "20.00 → 20.50 (+2.5%)") and "ft_l" not in line  # |+2.5%| < |-4%|


def test_same_subject_survival_is_computed_from_labelled_pairs():
    runs = (run("memit", 20, eff=1.0), run("memit", 20, eff=0.3),
            run("memit-merge", 20, eff=1.0), run("memit-merge", 20, eff=0.95),
            run("ft_l", 20, eff=0.2), run("ft_l", 20, eff=0.25),
            run("pmet", 20, eff=0.6), run("pmet", 20, eff=0.9))
    labels = [DISTINCT_SUBJECT, SAME_SUBJECT] * 4
    report = Report("stress same-subject", {}, runs, {"run_labels": labels})
    line = bullet(which_method(report), "Survives same-subject batches")
    assert "memit (batch of 20) does not survive: efficacy (token acc.) 100.0%" in line
    assert "memit-merge (batch of 20) survives" in line and "drop 5.0 points" in line
    # Below the distinct-subject floor there is nothing to lose; a rise beyond noise is flagged.
    assert "ft_l (batch of 20) cannot be judged (distinct-subject efficacy below the 50.0% floor" in line
    assert "pmet (batch of 20) shows an anomaly" in line
    unpaired = Report("stress same-subject", {}, runs[:1], {"run_labels": [SAME_SUBJECT]})
    assert "Cannot say: no editor has both" in which_method(unpaired)


def test_a_single_editor_is_not_ranked_and_missing_data_is_named():
    lonely = Report("stress sequential", {}, (sequential("memit", [1.0, 0.8]),))
    text = which_method(lonely)
    assert "the data rank no editor against another" in text
    assert "### Setting:" not in text
    no_locality = Report("compare", {}, (run("memit", loc={}, ppl_before=None),
                                         run("pmet", loc={}, ppl_before=None),
                                         run("unedited", eff=0.02, loc={}, ppl_before=None)))
    text = which_method(no_locality)
    assert "Cannot say: no run in this setting measured locality." in text
    assert "Cannot say: the Average needs generality and locality" in text
    assert "Cannot say: no run in this setting edits, keeps mean locality" in text
    no_reference = which_method(Report("compare", {}, (run("memit"), run("pmet"))))
    assert "Cannot say: this setting has no unedited run" in no_reference


def test_batch_growth_names_the_last_batch_size_that_still_works():
    runs = (run("memit", 1, eff=1.0), run("memit", 10, eff=0.95), run("memit", 100, eff=0.5))
    text = which_method(Report("stress batch-sweep", {}, runs))
    assert "memit keeps efficacy ≥ 90.0% up to batch 10; at 100 it is 50.0%" in text
    stricter = which_method(Report("stress batch-sweep", {}, runs), Thresholds(efficacy_kept=0.99))
    assert "memit keeps efficacy ≥ 99.0% up to batch 1; at 100 it is 50.0%" in stricter
