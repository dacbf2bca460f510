"""Time and peak memory of a MEMIT edit: batched, chunked, and one request at a time.

    python -m perf.editing [--requests 100] [--chunk 10] [--paths batched,chunked,one-at-a-time]
                           [--out /tmp/perf-editing] [--threads N]

On the same CounterFact test edits with the default model, each path is a whole MEMIT edit
(value optimisation, spread, apply), run in its own process so peaks do not mix:

- `batched`: editscope's value optimisation of every request in one batched pass (default
  hparams, bf16 forward/backward), with an unlimited memory budget;
- `batched-float32`: the same in float32 (the v_dtype comparison behind the llama default);
- `chunked`: the same as `batched` under a memory budget (`EDITSCOPE_MAX_MEMORY`) that the
  estimate of `editors.memory_plan` turns into chunks of `--chunk` requests;
- `one-at-a-time`: the value optimisation as the reference implementations (and EasyEdit) run
  it: one request at a time, a full forward pass per step, logits at every position, float32;
  then the same spread under the chunked path's budget (the paths differ only in the values).
  With `--one-at-a-time-requests K` it edits only K requests: its time is then scaled, and its
  peak misses the spread of the other requests (the output says so).

Per path it prints the edit's wall time, the process's peak memory during the edit (peak RSS on
a CPU, peak allocated on a GPU) and above the loaded model, the dry-run estimate of that peak
(`editors.memory_plan`, from the model's config, as `plan` prints it), the chunks, and the
edit's efficacy; then the ratios the memory budget is judged by: chunked/one-at-a-time peak,
one-at-a-time/chunked time, and how far the chunked values are from the batched ones. A path
whose result file exists in `--out` is not run again (a long one-at-a-time run can be resumed
by running the command again). The covariance and context prefixes are read from their caches
(computed first if absent, not measured); values are never reused from the value cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

PATHS = ("batched", "batched-float32", "chunked", "one-at-a-time")
DEFAULT_PATHS = ("batched", "chunked", "one-at-a-time")


def efficacy(model, tok, requests) -> tuple[float, float]:
    """(teacher-forced target accuracy, share with P(new) > P(old)) on the edit prompts."""
    from lm.scoring import LMScorer
    from metrics.efficacy import efficacy_score, token_accuracy

    scorer = LMScorer(model, tok)
    prompts = [r.prompt for r in requests]
    new = scorer.score(prompts, [r.target_new for r in requests])
    old = scorer.score(prompts, [r.target_true for r in requests])
    return token_accuracy(new), efficacy_score(new, old)


def reference_style_values(model, batch, indices, options, layer: int) -> torch.Tensor:
    """MEMIT's z step as the reference runs it: per request, full forward, all-position logits."""
    from lm.adapters import adapter_for
    from lm.hooks import add_at_positions, capture

    block = model.get_submodule(adapter_for(model).block_name(layer))
    targets_z = []
    for r in indices:
        target = list(batch.targets[r])
        sequences = [list(site.ids) + target[:-1] for site in batch.sites[r]]
        positions = [site.position for site in batch.sites[r]]
        essence = batch.essence[r]
        if essence is not None:
            sequences.append(list(essence.ids))
            positions.append(essence.position)
        width = max(len(s) for s in sequences)
        input_ids = torch.zeros(len(sequences), width, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        rows = torch.arange(len(sequences))
        cols = torch.tensor(positions)
        n_prompts = len(batch.sites[r])
        delta = torch.zeros(model.config.hidden_size, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=options.lr)
        h0 = base = None
        for step in range(options.steps):
            with capture({"block": block}) as seen, add_at_positions(block, delta.expand(len(rows), -1), rows, cols):
                logits = model(input_ids=input_ids, attention_mask=mask).logits
            logprobs = logits.float().log_softmax(-1)  # every position, as the reference does
            if step == 0:
                h0 = seen["block"][0, positions[0]].float()
            nll = 0.0
            for row in range(n_prompts):
                first = len(batch.sites[r][row].ids) - 1
                picked = logprobs[row, first : first + len(target)].gather(1, torch.tensor(target)[:, None])
                nll = nll - picked.mean() / n_prompts
            kl = torch.zeros(())
            if essence is not None and options.kl_factor > 0:
                current = logprobs[n_prompts, positions[-1]]
                if step == 0:
                    base = current.detach()
                kl = (current.exp() * (current - base)).sum()
            loss = nll + options.kl_factor * kl + options.weight_decay * delta.norm() / h0.norm() ** 2
            if loss.item() < options.early_stop or step == options.steps - 1:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                limit = options.clamp_factor * h0.norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
        targets_z.append((h0 + delta).detach())
    return torch.stack(targets_z)


def run_path(path: str, n_requests: int, chunk: int, out: Path, single_requests: int) -> None:
    """One path in this process; writes `<out>/<path>.json` and its value vectors `<path>.pt`."""
    from data.benchmarks import load_benchmark
    from editors.applied import WeightEdit
    from editors.hparams import load_hparams
    from editors.kv_editor import prepare_batch
    from editors.memit import MemitEditor
    from editors.memory_plan import plan_values
    from editors.solve import memit_delta
    from editors.spread import spread_over_layers
    from editors.values import ValueOptions, group_bytes
    from lm.adapters import adapter_for
    from lm.loading import load
    from lm.memory import MAX_MEMORY_ENV, ModelShape, device_used_bytes, dtype_bytes
    from perf.memory import PeakMemory, resident_bytes

    before_model = resident_bytes()
    model, tok = load("default")
    device = next(model.parameters()).device
    requests = load_benchmark("counterfact", "test")[: single_requests if path == "one-at-a-time" else n_requests]
    v_dtype = "float32" if path in ("batched-float32", "one-at-a-time") else None
    hparams = load_hparams("memit", model.config.model_type, {"v_dtype": v_dtype} if v_dtype else None)
    seen: dict = {}

    class RecordingMemit(MemitEditor):
        """MEMIT that keeps the value result of its apply (to compare paths' values)."""

        def optimise(self, *args, **kwargs):
            seen["values"] = super().optimise(*args, **kwargs)
            return seen["values"]

    editor = RecordingMemit(hparams, reuse_values=False)
    moments = editor.moments(model, tok)  # covariance: cached or computed here, outside the measurement
    batch = prepare_batch(model, tok, requests, hparams)  # context prefixes likewise
    shape = ModelShape.from_model(model)
    compute = dtype_bytes({"float32": torch.float32, "bfloat16": torch.bfloat16}[hparams.v_dtype])
    groups = [[r] for r in range(len(requests))]
    costs = group_bytes(shape, compute, hparams.last_layer, batch.sites, batch.essence, batch.targets, groups,
                        use_kl=hparams.kl_factor > 0, eager=compute != shape.dtype_bytes)
    copy_bytes = 0 if compute == shape.dtype_bytes else shape.weights_in(compute)
    if path in ("chunked", "one-at-a-time"):
        # The budget the estimate turns into chunks of `chunk`: what is held now, the compute
        # copy, and `chunk` of the costliest requests with most of one more as slack. The
        # one-at-a-time path's spread runs under the same budget, so the two paths share one
        # spread (the budget bounds its key reads) and differ only in how the values are made.
        budget = device_used_bytes(device) + copy_bytes + int((chunk + 0.9) * max(costs))
    else:
        budget = 10**15  # unlimited: one chunk
    # An explicit budget also fixes glibc's mmap threshold (lm.memory): every path runs with it.
    os.environ[MAX_MEMORY_ENV] = str(budget)
    estimate = plan_values(shape, hparams, len(requests), compute, max_memory=None)
    model_loaded = resident_bytes() if device.type == "cpu" else device_used_bytes(device)

    started = time.perf_counter()
    with PeakMemory(device) as peak:
        if path == "one-at-a-time":
            options = ValueOptions.from_hparams(hparams)
            z = reference_style_values(model, batch, range(len(requests)), options, hparams.last_layer)
            spread = spread_over_layers(
                model, batch.sites, groups, hparams.layers, adapter_for(model).block_name(hparams.last_layer), z,
                solve=lambda layer, R, K: memit_delta(R, K, moments[layer].matrix(), hparams.mom2_update_weight),
            )
            applied = WeightEdit.apply(model, tok, spread.deltas)
            chunks = [1] * len(requests)
        else:
            applied = editor.apply(model, tok, requests)
            z = seen["values"].targets(editor.output_site(adapter_for(model)))
            chunks = list(seen["values"].chunks)
    seconds = time.perf_counter() - started
    accuracy, score = efficacy(model, tok, requests)
    applied.undo()
    torch.save(z, out / f"{path}.pt")
    result = {
        "path": path,
        "requests": len(requests),
        "v_dtype": hparams.v_dtype,
        "seconds": seconds,
        "peak_bytes": peak.peak,
        "before_model_bytes": before_model,
        "model_loaded_bytes": model_loaded,
        # The dry-run estimate (`plan`) of the process's peak with the chunk this path used.
        "estimated_peak_bytes": None if path == "one-at-a-time" else estimate.peak_bytes(max(chunks)),
        "chunks": chunks,
        "efficacy_accuracy": accuracy,
        "efficacy_score": score,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }
    (out / f"{path}.json").write_text(json.dumps(result, indent=1))


def describe(results: dict, out: Path) -> None:
    from lm.memory import format_size
    from lm.memory import sequence_counts

    print(f"{'path':<16}{'edit s':>8}{'peak':>11}{'above model':>13}{'estimate':>11}  "
          f"{'efficacy acc / P(new)>P(old)':<30}chunks")
    for path, r in results.items():
        above = r["peak_bytes"] - r["model_loaded_bytes"]
        estimate = r["estimated_peak_bytes"]
        ratio = "" if estimate is None else f"estimate / measured peak {estimate / r['peak_bytes']:.2f}; "
        print(f"{path:<16}{r['seconds']:>8.0f}{format_size(r['peak_bytes']):>11}{format_size(above):>13}"
              f"{'-' if estimate is None else format_size(estimate):>11}  "
              f"{r['efficacy_accuracy']:.3f} / {r['efficacy_score']:.3f}{'':<15}{sequence_counts(r['chunks'])}"
              f"   ({ratio}load {r['load_average'][0]:.1f} at its end, {r['threads']} thread(s))")
    if "chunked" in results and "one-at-a-time" in results:
        chunked, single = results["chunked"], results["one-at-a-time"]
        scale = chunked["requests"] / single["requests"]
        note = "" if scale == 1 else (f" (one-at-a-time measured on {single['requests']} requests, "
                                      f"{single['seconds'] / single['requests']:.1f} s each, scaled to {chunked['requests']}; "
                                      "its peak covers the spread of those requests only)")
        print(f"chunked peak / one-at-a-time peak: {chunked['peak_bytes'] / single['peak_bytes']:.2f}; "
              f"one-at-a-time time / chunked time: {single['seconds'] * scale / chunked['seconds']:.1f}x{note}")
    if "chunked" in results and "batched" in results:
        batched_z, chunked_z = torch.load(out / "batched.pt"), torch.load(out / "chunked.pt")
        gap = ((chunked_z - batched_z).norm(dim=1) / batched_z.norm(dim=1)).max().item()
        difference = abs(results["chunked"]["efficacy_score"] - results["batched"]["efficacy_score"])
        print(f"chunked vs batched: largest relative difference of a value vector {gap:.2e}; "
              f"efficacy P(new)>P(old) differs by {difference:.3f}; "
              f"time chunked / batched {results['chunked']['seconds'] / results['batched']['seconds']:.2f}")
    if "batched-float32" in results and "one-at-a-time" in results:
        # Same float32 precision: the reference procedure computes the same vectors.
        single = results["one-at-a-time"]
        ours_z, single_z = torch.load(out / "batched-float32.pt"), torch.load(out / "one-at-a-time.pt")
        ours_z = ours_z[: len(single_z)]
        gap = ((ours_z - single_z).norm(dim=1) / single_z.norm(dim=1)).max().item()
        scale = results["batched-float32"]["requests"] / single["requests"]
        print(f"float32 one-at-a-time time / batched time: "
              f"{single['seconds'] * scale / results['batched-float32']['seconds']:.1f}x; largest relative "
              f"difference of their value vectors on the first {len(single_z)} requests {gap:.2e}")
    if "batched" in results and "batched-float32" in results:
        print(f"value optimisation in float32 / bfloat16 time: "
              f"{results['batched-float32']['seconds'] / results['batched']['seconds']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=10, help="requests per chunk of the chunked path")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS), help=f"comma-separated, from {', '.join(PATHS)}")
    parser.add_argument("--out", type=Path, default=Path("/tmp/perf-editing"),
                        help="results per path; a path already there is not run again")
    parser.add_argument("--one-at-a-time-requests", type=int, default=None,
                        help="edit only the first K requests on the (slow) one-at-a-time path; its time is "
                             "then scaled to --requests in the ratio (said so)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--run-path", choices=PATHS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out / f"{args.requests}-requests-{args.one_at_a_time_requests or args.requests}-single"
    out.mkdir(parents=True, exist_ok=True)
    if args.run_path:
        run_path(args.run_path, args.requests, args.chunk, out, args.one_at_a_time_requests or args.requests)
        return
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path {', '.join(unknown)}; choose from {', '.join(PATHS)}")
    print(f"{args.requests} CounterFact test edits, default model; load average {os.getloadavg()[0]:.1f} "
          "at start (other processes slow every wall time here)", flush=True)
    results = {}
    for path in paths:
        result_file = out / f"{path}.json"
        if not result_file.exists():
            command = [sys.executable, "-m", "perf.editing", "--run-path", path, "--requests", str(args.requests),
                       "--chunk", str(args.chunk), "--out", str(args.out),
                       "--one-at-a-time-requests", str(args.one_at_a_time_requests or args.requests)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            subprocess.run(command, check=True)
        results[path] = json.loads(result_file.read_text())
    describe(results, out)


if __name__ == "__main__":
    main()
