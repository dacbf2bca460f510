"""What the model-health measurements of one harness scoring step cost, before and after the
measurement issue, measured in one run so that both see the same machine load.

For one batch of edit requests on the plain model (an edited model costs the same):
- requests: efficacy, generality, locality and NS of every request (unchanged);
- fluency before: greedy continuations of 20 edit prompts, at most 40 new tokens (stopping at
  the end of turn); after: top-5 sampling of 50 edit prompts to exactly 100 new tokens;
- perplexity before: 1,024 held-out target tokens after a one-word prompt; after: 8,192
  target tokens, each piece after its 16 preceding words.
It prints CPU seconds per part (process time on one torch thread: robust when other processes
share the machine, and equal to wall time on an idle one) and the ratio of a whole scoring step
after / before, which multiplies the "Scoring s" column of a report made before the change.

    python perf/measurement.py [--requests 100]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.edit_sets import draw_edits  # noqa: E402
from experiments.heldout import heldout_losses, heldout_text  # noqa: E402
from experiments.records import Settings  # noqa: E402
from experiments.scoring import fluency_samples, locality_predictions, score_requests  # noqa: E402
from lm.loading import load  # noqa: E402
from lm.scoring import LMScorer  # noqa: E402

BEFORE = Settings(fluency_prompts=20, fluency_new_tokens=40, fluency_top_k=0, perplexity_tokens=1024,
                  perplexity_context_words=1)
AFTER = Settings()


@click.command()
@click.option("--requests", "count", type=int, default=100, show_default=True)
def main(count: int) -> None:
    torch.set_num_threads(1)
    model, tok = load("default", device="cpu")
    scorer = LMScorer(model, tok)
    requests = draw_edits("medcfpp", count, seed=0).requests
    unedited = locality_predictions(scorer, requests)

    def seconds(work) -> float:
        began = time.process_time()
        with torch.inference_mode():
            work()
        return time.process_time() - began

    parts = {"requests": seconds(lambda: score_requests(scorer, requests, unedited))}
    for name, settings in (("before", BEFORE), ("after", AFTER)):
        prompts = [r.prompt for r in requests[: settings.fluency_prompts]]
        parts[f"fluency {name}"] = seconds(lambda: fluency_samples(scorer, prompts, settings, 0))
        text = heldout_text(tok, settings.perplexity_tokens, settings.perplexity_corpus,
                            settings.perplexity_context_words)
        parts[f"perplexity {name}"] = seconds(lambda: heldout_losses(scorer, text))
        print(f"{name}: {len(text.targets)} held-out pieces, {text.tokens} target tokens", flush=True)
    for name, value in parts.items():
        print(f"{name:>18}: {value:7.1f} CPU s")
    before = parts["requests"] + parts["fluency before"] + parts["perplexity before"]
    after = parts["requests"] + parts["fluency after"] + parts["perplexity after"]
    print(f"scoring step before {before:.1f} s, after {after:.1f} s: ratio after/before {after / before:.2f}")


if __name__ == "__main__":
    main()
