"""`editscope akd`: Average Key Distance per layer of batches of varying composition, and its
rank correlation with efficacy (MEMIT-Merge §3.2 and App. C).

The batches are built from one same-/distinct-subject pair (one record per relation):
mixtures in which a share p of the records carries one shared subject, and, for CounterFact,
both pair sets rewritten with App. C's two templates (relation phrases from
`data.relation_names`). Every editor edits every batch in batch mode; AKD is read at the
subject's last token, as the paper measures it. A retrieval editor has no MLP keys, so for it
the share of edits whose knowledge-encoder keys nearly coincide (High-Sim. Samples, MedREK
Fig. 2c) is reported instead (`editors.protocol.KnowledgeKeys`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import click
from rich.table import Table

from covariance.distributed import current_rank
from covariance.stats import check_layers
from data.batches import SubjectSetPair
from data.benchmarks import load_benchmark
from data.relation_names import RelationNames, counterfact_relation_names
from data.relations import infer_relations
from editors.hparams import load_hparams
from data.requests import EditRequest
from editors.protocol import Editor, KnowledgeKeys
from experiments.commands.common import field_map_option, max_target_tokens_option, parse_layer_option
from experiments.commands.compare import BENCHMARK_HELP
from experiments.commands.stress import SPLIT_HELP, subject_pair
from experiments.commands.sweep import Job, job_akd_entries, line_up, run_jobs
from experiments.commands.sweep_options import SweepArguments, sweep_options
from experiments.console import fail
from experiments.edit_sets import cut_long_targets, edit_set_of
from experiments.records import RunRecord
from experiments.report import correlation_entry
from experiments.report.formatting import fixed, percent
from lm.loading import load
from metrics import high_similarity_share, spearman_correlation

SHARED_SUBJECT_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
# MEMIT-Merge App. C; each template's batch is paraphrased with the other (App. A).
APP_C_TEMPLATES = ("{subject}'s {relation} is", "The name of the {relation} of {subject} is")


@dataclass(frozen=True)
class CompositionBatch:
    """One batch of the experiment and how it was composed."""

    label: str
    requests: tuple[EditRequest, ...]
    shared_subject_share: float  # share of the records renamed to the one shared subject
    template: str | None  # App. C template of its prompts; None: the benchmark's own prompts

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "edits": len(self.requests),
                "shared_subject_share": self.shared_subject_share, "template": self.template}


def composition_batches(pair: SubjectSetPair, names: RelationNames | None) -> list[CompositionBatch]:
    """The mixtures for every share of `SHARED_SUBJECT_SHARES`, then (with relation names) the
    same- and distinct-subject sets in each App. C template."""
    size = len(pair.same_subject)
    batches = []
    for share in SHARED_SUBJECT_SHARES:
        shared = math.floor(share * size + 0.5)
        batches.append(CompositionBatch(
            f"{share:.0%} shared subject", pair.same_subject[:shared] + pair.distinct_subject[shared:],
            shared / size, None))
    if names is None:
        return batches
    for index, template in enumerate(APP_C_TEMPLATES):
        paraphrase = APP_C_TEMPLATES[1 - index]
        for kind, records, share in (("same subject", pair.same_subject, 1.0),
                                     ("distinct subjects", pair.distinct_subject, 0.0)):
            rewritten = tuple(templated(request, names.phrase(relation), template, paraphrase)
                              for request, relation in zip(records, pair.relations))
            batches.append(CompositionBatch(f"template {index + 1}, {kind}", rewritten, share, template))
    return batches


def templated(request: EditRequest, relation: str, template: str, paraphrase: str) -> EditRequest:
    """The request's fact in `template`, its rephrasing in `paraphrase`; targets and locality
    probes unchanged."""
    def fill(text: str) -> str:
        return text.format(subject=request.subject, relation=relation)

    return replace(request, prompt=fill(template), rephrase_prompts=(fill(paraphrase),),
                   metadata={**request.metadata, "template": template})


def experiment_batches(benchmark: str, split: str | None, size: int, seed: int,
                       fields: Any = None) -> list[CompositionBatch]:
    """The batches of one run, built before any model is loaded (one-sentence errors)."""
    if benchmark == "counterfact":
        pool = load_benchmark("counterfact", split, fields)
        # Relations inferred from one split stay split (data.relations); both join them.
        relations = infer_relations(load_benchmark("counterfact", "train") + load_benchmark("counterfact", "test"))
        names = counterfact_relation_names()
    else:
        pool = load_benchmark(benchmark, split, fields)
        relations, names = infer_relations(pool), None
    return composition_batches(subject_pair(pool, relations, size, seed, "--batch"), names)


def last_edited_layer(editor: Editor, default: int) -> int:
    """Where the paper reads AKD: the editor's last edited layer (MEMIT's for editors without layers)."""
    return default if editor.hparams is None else max(editor.hparams.edited_layers)


def akd_correlations(jobs: Sequence[Job], records: Sequence[RunRecord], akd: Sequence[dict],
                     layer_of: Mapping[str, int]) -> list[dict]:
    """Spearman's rho of AKD at each editor's last edited layer against its efficacy, in both
    conventions, over the editor's batches."""
    akd_at = {(entry["run_index"], entry["layer"]): entry["akd"] for entry in akd}
    scores: tuple[tuple[str, Callable], ...] = (
        ("Eff (token acc.)", lambda result: result.efficacy_accuracy),
        ("Eff score", lambda result: result.efficacy_score),
    )
    entries = []
    for editor, layer in layer_of.items():
        runs = [index for index, job in enumerate(jobs) if job.editor == editor]
        distances = [_number(akd_at[(index, layer)]) for index in runs]
        for name, score in scores:
            efficacy = [_number(score(records[index].aggregate)) for index in runs]
            entries.append(correlation_entry(f"AKD at layer {layer}", f"{editor} {name}",
                                             spearman_correlation(distances, efficacy)))
    return entries


def high_similarity_entries(jobs: Sequence[Job], lineup: Mapping[str, Editor]) -> list[dict]:
    """High-Sim. Samples share of each run of an editor that stores knowledge-encoder keys
    (`KnowledgeKeys`: the retrieval editors), from the keys it would store for the run's edits."""
    return [{"run_index": index, "editor": job.editor, "label": job.label,
             "high_sim_samples": high_similarity_share(lineup[job.editor].knowledge_keys(job.edits.requests))}
            for index, job in enumerate(jobs) if isinstance(lineup[job.editor], KnowledgeKeys)]


@click.command("akd")
@click.option("--benchmark", default="counterfact", show_default=True,
              help=BENCHMARK_HELP + " App. C templates need relation names, which only CounterFact has.")
@click.option("--split", default=None, help=SPLIT_HELP)
@field_map_option
@max_target_tokens_option
@click.option("--layers", "layer_text", default=None,
              help="Layers whose AKD is reported, e.g. 2-8 or 2,4,6 (default: MEMIT's edited layers "
                   "for the model's family).")
@click.option("--batch", "batch_size", type=int, default=20, show_default=True,
              help="Edits per batch, one per relation (at most 24 for CounterFact).")
@sweep_options(default_editors="memit")
def akd_command(benchmark, split, fields, max_target_tokens, layer_text, batch_size, sweep: SweepArguments):
    """AKD per layer of batches with 0–100% shared subjects and in App. C's templates, each
    edited in batch mode, and the Spearman correlation of AKD with efficacy."""
    if batch_size < 2:
        fail(f"--batch must be at least 2 edits, since AKD is a distance between pairs, not {batch_size}.")
    if len(sweep.seeds) > 1:
        fail("akd correlates the batches of one draw; give one --seed instead of several --seeds.")
    layers = parse_layer_option(layer_text) if layer_text is not None else None
    names = sweep.editor_names()
    rank = current_rank()
    out = sweep.console(rank)
    batches = experiment_batches(benchmark, split, batch_size, sweep.seed, fields)
    model, tok = load(sweep.model_name)
    memit_layers = load_hparams("memit", model.config.model_type).layers
    layers = tuple(check_layers(model, layers)) if layers is not None else memit_layers
    label = batches[0].requests[0].metadata.get("benchmark", benchmark)
    hparams = sweep.hparams(label)
    lineup = line_up(names, model, out, hparams=hparams)
    edit_sets = [cut_long_targets(edit_set_of(batch.requests, label, sweep.seed), tok, max_target_tokens)
                 for batch in batches]
    jobs = [Job(name, edits, batch_size, label=batch.label)
            for name in lineup for batch, edits in zip(batches, edit_sets)]
    records = run_jobs(jobs, lineup, model, tok, sweep.settings, rank, out,
                       plan=sweep.worker_plan(len(jobs), hparams=hparams))
    if records is None:
        return
    layer_of = {name: last_edited_layer(editor, memit_layers[-1]) for name, editor in lineup.items()}
    akd = job_akd_entries(jobs, model, tok, sorted({*layers, *layer_of.values()}))
    high_similarity = high_similarity_entries(jobs, lineup)
    correlations = akd_correlations(jobs, records, akd, layer_of)
    out.print(akd_table(batches, jobs, records, akd, layers))
    out.print(correlation_table(correlations))
    analyses = {"run_labels": [job.label for job in jobs], "akd": akd, "correlations": correlations,
                "akd_batches": [batch.describe() for batch in batches],
                "akd_layers": {"reported": list(layers), "correlated": layer_of}}
    if high_similarity:
        analyses["high_similarity_samples"] = high_similarity
    sweep.publish("akd", dict(benchmark=benchmark, split=split, fields=fields and fields.spec,
                              max_target_tokens=max_target_tokens, layers=layer_text, batch=batch_size),
                  records, out, analyses)


def akd_table(batches: Sequence[CompositionBatch], jobs: Sequence[Job], records: Sequence[RunRecord],
              akd: Sequence[dict], layers: Sequence[int]) -> Table:
    """Batch × (AKD per reported layer, each editor's efficacy)."""
    editors = list(dict.fromkeys(job.editor for job in jobs))
    first_run: dict[str | None, int] = {}
    for index, job in enumerate(jobs):
        first_run.setdefault(job.label, index)
    akd_at = {(entry["run_index"], entry["layer"]): entry["akd"] for entry in akd}
    efficacy = {(job.editor, job.label): record.aggregate.efficacy_accuracy for job, record in zip(jobs, records)}
    table = Table(title="AKD per layer (subject's last token) and efficacy (token acc.) per batch")
    table.add_column("Batch", no_wrap=True)
    for column in (*(f"AKD L{layer}" for layer in layers), *(f"{editor} Eff" for editor in editors)):
        table.add_column(column, justify="right")
    for batch in batches:
        run = first_run[batch.label]
        table.add_row(batch.label, *(fixed(akd_at[(run, layer)], 2) for layer in layers),
                      *(percent(efficacy[(editor, batch.label)]) for editor in editors))
    return table


def correlation_table(correlations: Sequence[dict]) -> Table:
    table = Table(title="Spearman rank correlation of AKD with efficacy")
    for column in ("AKD", "Efficacy", "rho", "p", "pairs", "why undefined"):
        table.add_column(column, justify="right" if column in ("rho", "p", "pairs") else "left")
    for entry in correlations:
        table.add_row(entry["x"], entry["y"], fixed(entry["rho"], 3), fixed(entry["p"], 4), str(entry["n"]),
                      entry["reason"] or "–")
    return table


def _number(value: float | None) -> float:
    """None (an undefined score or AKD) as NaN, which the correlation drops."""
    return math.nan if value is None else value
