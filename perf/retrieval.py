"""Retrieval editors at 10,000 stored edits: query latency against the unedited model, and the
time to add an edit.

Latency: greedy 20-token generation for one query at a time, through the edited model's scorer
(encode the query, exact search over 10,000 keys, sentinel test, prompt prepended) and through
the plain model, interleaved query by query so both see the same machine load. Queries are
stored edit prompts (they retrieve, so the prompt is injected) and unrelated prompts (they
retrieve nothing). Adding: the mean time per edit when the 10,000 are added in batches, and
when single edits are added one `apply` at a time to the full memory.

    python perf/retrieval.py [--editor medrek|medrek_copy|recipe|ike] [--edits 10000] [--queries 20]

The shipped checkpoint is used when present, else an untrained network of the same shape
(timing does not depend on the weights). `ike` prepends the retrieved statement as text, so its
hits are expected to cost more than a 3-token continuous prompt.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.benchmarks import load_benchmark  # noqa: E402
from lm.loading import load  # noqa: E402
from lm.scoring import LMScorer  # noqa: E402
from retrieval.checkpoint import CheckpointError  # noqa: E402
from retrieval.editor import RetrievalEditor  # noqa: E402
from retrieval.encoder import KnowledgeEncoder  # noqa: E402
from retrieval.incontext import InContextEditor  # noqa: E402
from retrieval.medrek import new_medrek, new_medrek_copy  # noqa: E402
from retrieval.recipe import new_recipe  # noqa: E402
from retrieval.registry import make_editor  # noqa: E402

# Untrained stand-ins of the same shape, when no checkpoint is shipped.
BUILDERS = {"recipe": (RetrievalEditor, new_recipe), "medrek": (RetrievalEditor, new_medrek),
            "medrek_copy": (RetrievalEditor, new_medrek_copy), "ike": (InContextEditor, new_medrek)}
NEW_TOKENS = 20


@click.command()
@click.option("--editor", "name", type=click.Choice(sorted(BUILDERS)), default="medrek", show_default=True)
@click.option("--edits", type=int, default=10_000, show_default=True)
@click.option("--queries", type=int, default=20, show_default=True)
@click.option("--singles", type=int, default=50, show_default=True, help="Single-edit adds to time.")
def main(name: str, edits: int, queries: int, singles: int) -> None:
    model, tok = load("default")
    # Without EOS both paths generate exactly NEW_TOKENS tokens, so the ratio compares equal work.
    model.generation_config.eos_token_id = None
    encoder = KnowledgeEncoder.load("default", device=model.device)
    try:
        editor = make_editor(name, model)
        weights = "shipped checkpoint"
    except CheckpointError:
        kind, build = BUILDERS[name]
        editor = kind(build(encoder, model), encoder)
        weights = "untrained network (no shipped checkpoint)"
    stored = (load_benchmark("counterfact", "train") + load_benchmark("counterfact", "test"))[: edits + singles]
    editor.llm_identity(model)  # fingerprint once, as any long-lived editor would

    started = time.perf_counter()
    for start in range(0, edits, 500):
        applied = editor.apply(model, tok, stored[start : min(start + 500, edits)])
    batch_add = (time.perf_counter() - started) / edits

    single_times = []
    for request in stored[edits : edits + singles]:
        started = time.perf_counter()
        single = editor.apply(model, tok, [request])
        single_times.append(time.perf_counter() - started)
        single.undo()

    edited, plain = applied.scorer, LMScorer(model, tok)
    hits = [request.prompt for request in stored[:edits:max(1, edits // queries)]][:queries]
    misses = [request.prompt for request in load_benchmark("medversa", "test")[:queries]]
    retrieved = editor_retrievals(applied, hits, misses)
    generate(edited, hits[:1]), generate(plain, hits[:1])  # warm up both paths
    timings = {"hits": ([], []), "misses": ([], [])}
    for kind, prompts in (("hits", hits), ("misses", misses)):
        for prompt in prompts:
            timings[kind][0].append(generate(edited, [prompt]))
            timings[kind][1].append(generate(plain, [prompt]))

    print(f"{name} ({weights}), {len(editor.memory):,} edits stored, torch threads {torch.get_num_threads()}")
    print(f"  retrieved: {retrieved[0]}/{len(hits)} stored prompts, {retrieved[1]}/{len(misses)} unrelated prompts")
    for kind, (ours, reference) in timings.items():
        ratio = statistics.median(o / r for o, r in zip(ours, reference))
        print(f"  {NEW_TOKENS}-token generation, {kind:6s}: edited {statistics.median(ours) * 1e3:7.1f} ms, "
              f"unedited {statistics.median(reference) * 1e3:7.1f} ms, ratio {ratio:.3f} (target <= 1.10)")
    print(f"  add one edit, batches of 500: {batch_add * 1e3:.1f} ms per edit (target <= 50 ms)")
    print(f"  add one edit, one apply each at {edits:,} stored: {statistics.mean(single_times) * 1e3:.1f} ms "
          f"mean, {statistics.median(single_times) * 1e3:.1f} ms median (target <= 50 ms)")


def generate(scorer, prompts) -> float:
    started = time.perf_counter()
    scorer.generate(prompts, NEW_TOKENS)
    return time.perf_counter() - started


def editor_retrievals(applied, hits, misses) -> tuple[int, int]:
    found = applied.retrieve(hits + misses).retrieved
    return (sum(entry is not None for entry in found[: len(hits)]),
            sum(entry is not None for entry in found[len(hits):]))


if __name__ == "__main__":
    main()
