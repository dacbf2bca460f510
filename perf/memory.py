"""Peak memory of a block of code (`PeakMemory`), and the value optimisation's estimate
checked against it on the default model (`python -m perf.memory [--batches 10,100]`, see `USAGE`).

Peak RSS on a CPU, peak allocated memory on a GPU.

On Linux the kernel keeps each process's peak RSS (VmHWM) and lets the process reset it
(`/proc/self/clear_refs`), so `PeakMemory` reads the exact peak instead of sampling; where the
reset is refused it falls back to sampling /proc in a background thread. Measure each path in
its own process when comparing peaks: freed memory a process keeps would otherwise count for
the next path.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from lm.memory import _status_field, resident_bytes

__all__ = ["PeakMemory", "resident_bytes", "peak_resident_bytes"]


def peak_resident_bytes() -> int:
    """The highest RSS of this process since it started or since the last reset (VmHWM)."""
    return _status_field("VmHWM")


def _reset_peak_resident() -> bool:
    """Set VmHWM back to the current RSS (Linux ≥ 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return peak_resident_bytes() <= resident_bytes() + 4096


class PeakMemory:
    """`with PeakMemory(device) as peak: ...` then `peak.peak` (bytes held at the peak: RSS on a
    CPU, torch's allocation on a GPU) and `peak.extra_bytes` (above what was held at the start)."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.01):
        self.device = torch.device(device)
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._exact = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = self.peak = torch.cuda.memory_allocated(self.device)
            return self
        self.start = self.peak = resident_bytes()
        self._exact = _reset_peak_resident()
        if not self._exact:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        if self._exact:
            self.peak = max(self.peak, peak_resident_bytes())
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())

    @property
    def extra_bytes(self) -> int:
        return self.peak - self.start


USAGE = """Estimate against measurement: the peak memory of the value optimisation on the default model.

    python -m perf.memory [--batches 10,100]

For each batch size, in its own process: the default model, its covariance statistics and
CounterFact test requests are loaded, then MEMIT's value optimisation (default hparams, 2 steps:
the peak is reached in the first) runs on the whole batch as one chunk. Printed: the process's
peak RSS during the optimisation, the dry-run estimate of `plan` for that batch (the same
numbers `python cli.py plan --batch N` prints, from the config and CounterFact's mean lengths),
and their ratio.
"""


def _measure_batch(batch: int) -> dict:
    from data.benchmarks import load_benchmark
    from editors.covariances import CorpusCovariance, fetch_moments
    from editors.hparams import load_hparams
    from editors.kv_editor import prepare_batch
    from editors.memory_plan import plan_values
    from editors.values import ValueOptions, ValueProblem, optimise_values
    from lm.adapters import adapter_for
    from lm.loading import load
    from lm.memory import MemoryBudget, ModelShape, dtype_bytes

    model, tok = load("default")
    hparams = load_hparams("memit", model.config.model_type, {"v_num_grad_steps": 2})
    moments = fetch_moments(CorpusCovariance(token_budget=hparams.mom2_tokens), model, tok, hparams.layers)
    requests = load_benchmark("counterfact", "test")[:batch]
    prepared = prepare_batch(model, tok, requests, hparams)
    device = next(model.parameters()).device
    with PeakMemory(device) as peak:
        problem = ValueProblem(hparams.last_layer, prepared.sites, prepared.essence, prepared.targets,
                               [[r] for r in range(batch)], (adapter_for(model).block_name(hparams.last_layer),))
        optimise_values(model, problem, ValueOptions.from_hparams(hparams), memory=MemoryBudget(10**15))
    compute = dtype_bytes({"float32": torch.float32, "bfloat16": torch.bfloat16}[hparams.v_dtype])
    plan = plan_values(ModelShape.from_model(model), hparams, batch, compute, None, on_cpu=device.type == "cpu")
    del moments
    return {"batch": batch, "measured": peak.peak, "estimated": plan.peak_bytes(batch)}


def measure_small_llama(requests: int = 10, seed: int = 0) -> dict:
    """Estimate and measured extra peak of the value optimisation (float32, 2 steps) on a small
    random llama (width 256, 4 layers, vocabulary 8000) with random CounterFact-shaped requests:
    a 12-token prompt keyed at token 5, 3 target tokens, 5 context prefixes of 10 tokens and the
    drift probe. Run it in a fresh process (`--small-llama`): in a long-lived one the allocator
    reuses memory earlier work freed, and the RSS peak understates what the step needs."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from editors.keys import KeySite
    from editors.values import ValueOptions, ValueProblem, group_bytes, optimise_values
    from lm.adapters import adapter_for
    from lm.memory import MemoryBudget, ModelShape

    generator = torch.Generator().manual_seed(seed)
    config = LlamaConfig(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=64, vocab_size=8000, max_position_embeddings=256)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval().requires_grad_(False)

    def tokens(n: int) -> tuple[int, ...]:
        return tuple(torch.randint(3, config.vocab_size, (n,), generator=generator).tolist())

    prompts = [tokens(12) for _ in range(requests)]
    prefixes = [tokens(10) for _ in range(5)]
    sites = [[KeySite(p, 5)] + [KeySite(prefix + p, 15) for prefix in prefixes] for p in prompts]
    essence = [KeySite(p[:6] + tokens(2), 5) for p in prompts]
    targets = [tokens(3) for _ in prompts]
    groups = [[r] for r in range(requests)]
    options = ValueOptions(steps=2, lr=0.05, weight_decay=1e-3, clamp_factor=4.0, kl_factor=0.0625, early_stop=0.0)
    estimate = sum(group_bytes(ModelShape.from_model(model), 4, 1, sites, essence, targets, groups, use_kl=True,
                               eager=model.config._attn_implementation == "eager"))
    with PeakMemory(torch.device("cpu")) as peak:
        problem = ValueProblem(1, sites, essence, targets, groups, (adapter_for(model).block_name(1),))
        optimise_values(model, problem, options, memory=MemoryBudget(10**15))
    return {"estimated": estimate, "measured": peak.extra_bytes}


def main() -> None:
    import argparse
    import json
    import os
    import subprocess
    import sys

    from lm.memory import format_size

    parser = argparse.ArgumentParser(description=USAGE.splitlines()[0])
    parser.add_argument("--batches", default="10,100")
    parser.add_argument("--run-batch", type=int, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--small-llama", action="store_true",
                        help="print the estimate and measured peak on a small random llama as JSON (tests)")
    args = parser.parse_args()
    if args.small_llama:
        print(json.dumps(measure_small_llama()))
        return
    if args.run_batch:
        print(json.dumps(_measure_batch(args.run_batch)))
        return
    print(f"load average {os.getloadavg()[0]:.1f}")
    for batch in [int(b) for b in args.batches.split(",")]:
        output = subprocess.run([sys.executable, "-m", "perf.memory", "--run-batch", str(batch)],
                                check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        print(f"batch {batch}: measured peak {format_size(result['measured'])}, estimated "
              f"{format_size(result['estimated'])}, estimate / measured {result['estimated'] / result['measured']:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
