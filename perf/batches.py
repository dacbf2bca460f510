"""Scoring, generation and the spread's key reads: the memory estimate against the measured peak.

    python -m perf.batches [--scoring-rows 8,32] [--generation-rows 8,32] [--spread-requests 100]
                           [--spread-room 250MB]

Each measurement runs in its own process on the default model (one thread), and prints the
extra peak RSS of the step (above what the process held before it) beside the estimate that
sizes its batches (`lm.memory`, `editors.memory_plan`):

- scoring: `rows` rows of `TOKENS_PER_ROW` tokens, a one-token prompt and every other position
  a target (the worst case the scorer's batches are sized for), against `rows × scoring_row_bytes`;
- generation: `rows` prompts of `TOKENS_PER_ROW` tokens, each continued by
  `GENERATION_NEW_TOKENS` sampled tokens, against `rows × generation_row_bytes`;
- spread: MEMIT's layerwise key reads (`LayerwiseKeys`, llama defaults, no deltas: memory does
  not depend on them) for the first N CounterFact test requests, once with unlimited room and
  once with `--spread-room` (chunks of requests), against `requests × spread_request_bytes`,
  with the largest difference of the keys the two read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

FILLER = "the of and a in to is was for on as with by he at from his it an were are which this".split()


def _scorer_run(kind: str, rows: int) -> dict:
    from lm.loading import load
    from lm.memory import GENERATION_NEW_TOKENS, ModelShape, generation_row_bytes, scoring_row_bytes
    from lm.scoring import TOKENS_PER_ROW, LMScorer, TopKSampling
    from perf.memory import PeakMemory

    model, tok = load("default")
    shape = ModelShape.from_model(model)
    scorer = LMScorer(model, tok, batch_size=rows)
    ids = tok(" ".join(FILLER[i % len(FILLER)] for i in range(4 * TOKENS_PER_ROW)))["input_ids"]
    if kind == "scoring":
        prompt = tok.decode(ids[:1])
        target = tok.decode(ids[1:TOKENS_PER_ROW], skip_special_tokens=True)
        scorer.score([prompt] * 2, [target] * 2)  # first-call allocations out of the measurement
        with PeakMemory() as peak:
            scorer.score([prompt] * rows, [target] * rows)
        estimate = rows * scoring_row_bytes(shape, TOKENS_PER_ROW)
    else:
        prompt = tok.decode(ids[: TOKENS_PER_ROW - 1], skip_special_tokens=True)
        scorer.continuations([prompt] * 2, 3, TopKSampling())
        with PeakMemory() as peak:
            scorer.continuations([prompt] * rows, GENERATION_NEW_TOKENS, TopKSampling())
        estimate = rows * generation_row_bytes(shape, TOKENS_PER_ROW, GENERATION_NEW_TOKENS)
    return {"what": f"{kind}, {rows} rows", "measured": peak.extra_bytes, "estimated": estimate}


def _spread_run(requests: int, room: int | None, keys_file: str) -> dict:
    from data.benchmarks import load_benchmark
    from editors.hparams import load_hparams
    from editors.keys import LayerwiseKeys
    from editors.kv_editor import prepare_batch
    from editors.memory_plan import spread_request_bytes
    from lm.adapters import adapter_for
    from lm.loading import load
    from lm.memory import MemoryBudget, ModelShape
    from perf.memory import PeakMemory

    class FixedRoom(MemoryBudget):
        def room(self, device):
            return self.total

    model, tok = load("default")
    hparams = load_hparams("memit", model.config.model_type)
    batch = prepare_batch(model, tok, load_benchmark("counterfact", "test")[:requests], hparams)
    output = adapter_for(model).block_name(hparams.last_layer)
    with PeakMemory() as peak:
        reader = LayerwiseKeys(model, batch.sites, output, hparams.last_layer,
                               memory=FixedRoom(10**15 if room is None else room))
        found = [reader.read(layer) for layer in hparams.layers]
    torch.save(found, keys_file)
    width = reader.state.block_inputs.shape[1]
    per_request = spread_request_bytes(ModelShape.from_model(model), len(batch.sites[0]), width)
    return {"what": f"spread, {requests} requests, {reader.requests_per_read} per read", "measured": peak.extra_bytes,
            "estimated": reader.requests_per_read * per_request}


def _in_child(arguments: list[str]) -> dict:
    output = subprocess.run([sys.executable, "-m", "perf.batches", "--child", *arguments], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    from lm.memory import format_size, parse_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scoring-rows", default="8,32")
    parser.add_argument("--generation-rows", default="8,32")
    parser.add_argument("--spread-requests", default="100")
    parser.add_argument("--spread-room", default="250MB", help="room of the chunked spread read")
    parser.add_argument("--out", default="/tmp/perf-batches", help="where the spread's keys are compared")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        kind, size, *rest = args.child
        if kind == "spread":
            result = _spread_run(int(size), None if rest[0] == "none" else int(rest[0]), rest[1])
        else:
            result = _scorer_run(kind, int(size))
        print(json.dumps(result))
        return
    os.makedirs(args.out, exist_ok=True)
    print(f"default model, one thread; load average {os.getloadavg()[0]:.1f} at start")

    def show(result: dict) -> None:
        print(f"{result['what']}: measured extra peak {format_size(result['measured'])}, estimated "
              f"{format_size(result['estimated'])}, estimate / measured {result['estimated'] / result['measured']:.2f}",
              flush=True)

    for kind, sizes in (("scoring", args.scoring_rows), ("generation", args.generation_rows)):
        for rows in [int(r) for r in sizes.split(",") if r]:
            show(_in_child([kind, str(rows)]))
    for requests in [int(r) for r in args.spread_requests.split(",") if r]:
        files = [f"{args.out}/spread-{requests}-{name}.pt" for name in ("whole", "chunked")]
        show(_in_child(["spread", str(requests), "none", files[0]]))
        show(_in_child(["spread", str(requests), str(parse_size(args.spread_room)), files[1]]))
        whole, chunked = (torch.load(f) for f in files)
        gap = max((a - b).abs().max().item() for pair_a, pair_b in zip(whole, chunked) for a, b in zip(pair_a, pair_b))
        print(f"spread, {requests} requests: largest difference of keys and outputs, chunked vs whole: {gap:.1e}")


if __name__ == "__main__":
    main()
