"""What the model-health measurements of one harness scoring step cost, before and after the
measurement issue, and what scoring in bfloat16 would save and change, measured in one run so
that every part sees the same machine load.

For one batch of edit requests on the plain model (an edited model costs the same):
- requests: efficacy, generality, locality and NS of every request (unchanged);
- fluency before: greedy continuations of 20 edit prompts, at most 40 new tokens (stopping at
  the end of turn); after: top-5 sampling of 50 edit prompts to exactly 100 new tokens;
- perplexity before: 1,024 held-out target tokens after a one-word prompt; after: 8,192
  target tokens, each piece after its 16 preceding words;
- with `--bf16`: the requests and the 8,192-token perplexity again on a bfloat16 copy of the
  model (the harness scores in float32; this is the option a shorter default run would need),
  and how often its argmax differs from float32's on the requests' target positions.
It prints CPU seconds per part (process time on one torch thread: robust when other processes
share the machine, and equal to wall time on an idle one) and the ratio of a whole scoring step
after / before, which multiplies the "Scoring s" column of a report made before the change.

    python perf/measurement.py [--requests 100] [--bf16]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.edit_sets import draw_edits  # noqa: E402
from experiments.heldout import PieceLosses, heldout_losses, heldout_text  # noqa: E402
from experiments.records import Settings  # noqa: E402
from experiments.scoring import fluency_samples, locality_predictions, score_requests  # noqa: E402
from lm.loading import load  # noqa: E402
from lm.precision import cast_copy  # noqa: E402
from lm.scoring import LMScorer  # noqa: E402

BEFORE = Settings(fluency_prompts=20, fluency_new_tokens=40, fluency_top_k=0, perplexity_tokens=1024,
                  perplexity_context_words=1)
AFTER = Settings()


@click.command()
@click.option("--requests", "count", type=int, default=100, show_default=True)
@click.option("--bf16", is_flag=True, help="Also time the forward-only parts on a bfloat16 copy.")
def main(count: int, bf16: bool) -> None:
    torch.set_num_threads(1)
    model, tok = load("default", device="cpu")
    scorer = LMScorer(model, tok)
    requests = draw_edits("medcfpp", count, seed=0).requests
    unedited = locality_predictions(scorer, requests)

    parts, result = {}, {}
    parts["requests"], _ = timed(lambda: score_requests(scorer, requests, unedited))
    for name, settings in (("before", BEFORE), ("after", AFTER)):
        prompts = [r.prompt for r in requests[: settings.fluency_prompts]]
        parts[f"fluency {name}"], _ = timed(lambda: fluency_samples(scorer, prompts, settings, 0))
        text = heldout_text(tok, settings.perplexity_tokens, settings.perplexity_corpus,
                            settings.perplexity_context_words)
        parts[f"perplexity {name}"], result[name] = timed(lambda: heldout_losses(scorer, text))
        print(f"{name}: {len(text.targets)} held-out pieces, {text.tokens} target tokens", flush=True)
    if bf16:
        _bf16_parts(scorer, requests, text, result["after"], parts)
    for name, value in parts.items():
        print(f"{name:>24}: {value:7.1f} CPU s")
    before = parts["requests"] + parts["fluency before"] + parts["perplexity before"]
    after = parts["requests"] + parts["fluency after"] + parts["perplexity after"]
    print(f"scoring step before {before:.1f} s, after {after:.1f} s: ratio after/before {after / before:.2f}")
    if bf16:
        forward = parts["requests"] + parts["perplexity after"]
        forward_bf16 = parts["requests bf16"] + parts["perplexity after bf16"]
        print(f"forward-only parts float32 {forward:.1f} s, bfloat16 {forward_bf16:.1f} s: "
              f"ratio {forward / forward_bf16:.2f}; a whole step in bfloat16 scoring would take "
              f"{forward_bf16 + parts['fluency after']:.1f} s (generation kept in float32)")


def timed(work) -> tuple[float, Any]:
    """CPU seconds `work()` took without autograd, and what it returned."""
    began = time.process_time()
    with torch.inference_mode():
        found = work()
    return time.process_time() - began, found


def _bf16_parts(exact: LMScorer, requests, text, losses: PieceLosses, parts) -> None:
    """The requests and the held-out text scored on a bfloat16 copy of the float32 model of
    `exact` (whose held-out `losses` are given), and how far that moves what they measure: the
    share of teacher-forced target positions (edit prompts, rephrasings, locality probes) whose
    argmax differs from float32's, and the perplexity."""
    fast = LMScorer(cast_copy(exact.model, torch.bfloat16), exact.tok)
    _, unedited = timed(lambda: locality_predictions(fast, requests))
    parts["requests bf16"], _ = timed(lambda: score_requests(fast, requests, unedited))
    parts["perplexity after bf16"], losses_bf16 = timed(lambda: heldout_losses(fast, text))
    pairs = [(prompt, r.target_new) for r in requests for prompt in (r.prompt, *r.rephrase_prompts)]
    pairs += [(p.prompt, p.ground_truth) for r in requests for group in r.locality.values() for p in group]
    _, (float32, bfloat16) = timed(lambda: [scorer.score([p for p, _ in pairs], [t for _, t in pairs])
                                            for scorer in (exact, fast)])
    positions = [(a, b) for x, y in zip(float32, bfloat16) for a, b in zip(x.argmax_ids, y.argmax_ids)]
    flipped = sum(a != b for a, b in positions) / len(positions)
    print(f"bfloat16 vs float32: argmax differs at {100 * flipped:.2f}% of {len(positions)} target positions; "
          f"held-out perplexity {losses.perplexity:.3f} (float32) vs {losses_bf16.perplexity:.3f} (bfloat16)")


if __name__ == "__main__":
    main()
