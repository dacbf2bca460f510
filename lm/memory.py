"""Memory: how much a run may hold, what a model's shape costs, and recovering from running out.

A `MemoryBudget` is the number of bytes one process may hold on its compute device at its
peak, weights included: resident memory (RSS) on a CPU, memory allocated by torch on a GPU.
It is `--max-memory` / `EDITSCOPE_MAX_MEMORY` when given, else what the process holds now
plus a share of what the device has free. The memory-heavy steps size their batches from it
(the value optimisation in chunks of requests, `editors.memory_plan`; covariance batches;
scoring and generation batches, `scorer_batch_size`), and `run_in_chunks` (or, for a scorer,
`halving_batch_on_out_of_memory`) halves a chunk and retries it when the device runs out anyway.

`ModelShape` is what those estimates read from a model: read from a loaded model, or from a
config alone (the model is built on PyTorch's "meta" device, which allocates nothing), so a
plan for a 7B model can be made on a laptop.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch

from lm.errors import UsageError

MAX_MEMORY_ENV = "EDITSCOPE_MAX_MEMORY"
# Of the memory free when a run starts, the share a run plans to use by default: the rest is
# headroom for what no estimate counts (allocator caches, fragmentation, other processes).
DEFAULT_FREE_SHARE = 0.8

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes in "24GB", "24 GiB", "512MB", "1.5e9": decimal units (GB = 10⁹) unless written
    binary (GiB = 2³⁰). Raises ValueError with one sentence."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise UsageError(f"Cannot read the memory size {text!r}; write it like 24GB, 512MB or 80GiB.")
    size = int(float(match.group(1)) * _UNITS[match.group(2)])
    if size <= 0:
        raise UsageError(f"The memory size {text!r} must be positive.")
    return size


def format_size(size: float) -> str:
    """Decimal gigabytes (or megabytes below one GB), as `parse_size` reads them back."""
    return f"{size / 1e9:.2f} GB" if abs(size) >= 1e9 else f"{size / 1e6:.0f} MB"


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where it cannot be read)."""
    return _status_field("VmRSS")


def _status_field(name: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def device_free_bytes(device: torch.device) -> int:
    """What the device has free now: CUDA's free memory, or the OS's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_used_bytes(device: torch.device) -> int:
    """What this process holds on the device now: torch's allocation on a GPU, RSS on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return resident_bytes()


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes this process may hold on its device at its peak, weights included."""

    total: int
    explicit: bool = False  # given by the user (--max-memory) rather than taken from free memory

    @classmethod
    def resolve(cls, device: torch.device, max_memory: int | str | None = None) -> "MemoryBudget":
        """`max_memory` if given, else `EDITSCOPE_MAX_MEMORY`, else what the process holds now
        plus `DEFAULT_FREE_SHARE` of the device's free memory."""
        given = max_memory if max_memory is not None else os.environ.get(MAX_MEMORY_ENV) or None
        if given is not None:
            if device.type == "cpu":
                # A budget the user set is held to on RSS, which must then follow the live
                # tensors; the default budget leaves room enough to keep glibc's faster default.
                keep_large_blocks_off_the_c_heap()
            return cls(parse_size(given) if isinstance(given, str) else int(given), explicit=True)
        return cls(device_used_bytes(device) + int(DEFAULT_FREE_SHARE * device_free_bytes(device)))

    def room(self, device: torch.device) -> int:
        """What is left for working memory on top of what the process holds now."""
        return self.total - device_used_bytes(device)

    def check(self, device: torch.device, what: str) -> None:
        """Raise `MemoryBudgetExceeded` when the process holds more than the budget now."""
        used = device_used_bytes(device)
        if used > self.total:
            raise MemoryBudgetExceeded(
                f"{what} holds {format_size(used)}, over the memory budget of {format_size(self.total)} (out of memory)."
            )


class MemoryBudgetExceeded(RuntimeError):
    """A step measured itself over its budget: treated like the device running out."""


def is_out_of_memory(error: BaseException) -> bool:
    """The device (or the budget) ran out: CUDA's error, the CPU allocator's, or ours."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryBudgetExceeded)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def release_memory(device: torch.device) -> None:
    """Give freed blocks back (collect cycles; empty CUDA's cache, or on a CPU hand glibc's
    freed heap pages back to the system), so the next chunk starts from what is live."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        trim_c_heap()


def trim_c_heap() -> None:
    """`malloc_trim(0)` where the C library has it (glibc): glibc keeps freed heap pages
    resident, so without it RSS — what a CPU budget measures — grows from one chunk to the
    next although the live tensors do not. Elsewhere (musl, macOS) a no-op."""
    trim = c_library_function("malloc_trim")
    if trim is not None:
        trim(0)


# glibc's mallopt parameter number of M_MMAP_THRESHOLD, and the value it starts with.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def keep_large_blocks_off_the_c_heap() -> None:
    """Fix glibc's mmap threshold at its initial 128 KiB, so every block above it (any tensor
    worth counting) is mapped on its own and unmapped when freed. By default glibc raises the
    threshold each time such a block is freed, after which tensors of up to 32 MiB land on the
    heap, whose freed holes stay resident: the peak RSS of a chunked value optimisation then
    grows from chunk to chunk (README, Performance: `perf/editing.py`), and a CPU budget, which
    measures RSS, halves chunks that fit. The price is speed (scoring and generation 1.16×
    slower on the default model, `python -m perf.allocator`), so only an explicit budget (the
    user's `--max-memory`) sets it. A no-op where the C library is not glibc."""
    mallopt = c_library_function("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def c_library_function(name: str):
    """The C library's function `name`, or None where the library lacks it (not glibc).
    Looked up in the symbols the interpreter already has loaded (`dlopen(NULL)`), which
    include the C library's: no `find_library`, which runs `ldconfig` in a subprocess."""
    return getattr(ctypes.CDLL(None), name, None)


def chunk_for(room: int, item_bytes: Sequence[int]) -> int:
    """The most items per chunk that fit `room` bytes, assuming each costs as much as the
    costliest (at least 1: a single item runs whatever the room; `run_in_chunks` catches it)."""
    if not item_bytes:
        return 1
    return max(1, min(len(item_bytes), int(room // max(1, max(item_bytes)))))


Result = TypeVar("Result")


def run_in_chunks(
    count: int,
    chunk: int,
    run: Callable[[list[int]], Result],
    device: torch.device,
    on_shrink: Callable[[int, BaseException], None] | None = None,
) -> list[tuple[list[int], Result]]:
    """`run(indices)` over 0…count-1 in consecutive chunks of at most `chunk` indices.

    When a chunk runs out of memory (`is_out_of_memory`), the chunk size is halved and the same
    indices are tried again (`on_shrink(new_size, error)` is told); a single index that still
    runs out re-raises. When the indices ran in more than one chunk, freed memory is released
    (`release_memory`) after each. Returns each chunk's indices with its result, in order.
    """
    done: list[tuple[list[int], Result]] = []
    start, size = 0, max(1, min(chunk, count))
    while start < count:
        indices = list(range(start, min(start + size, count)))
        try:
            result = run(indices)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
            if not is_out_of_memory(error) or size == 1:
                raise
            release_memory(device)
            size = max(1, size // 2)
            if on_shrink is not None:
                on_shrink(size, error)
            continue
        done.append((indices, result))
        start += len(indices)
        if start < count or len(done) > 1:
            # Split into chunks: each chunk's peak starts from the live tensors only. A call
            # that ran whole (e.g. covariance's per-batch slices) skips it: gc.collect alone
            # costs ~0.1 s with torch and transformers loaded.
            release_memory(device)
    return done


@dataclass(frozen=True)
class ModelShape:
    """The dimensions memory estimates need, read from the modules themselves."""

    layers: int
    width: int  # d, the residual stream
    ffn_width: int  # d_ff
    ffn_activations: int  # d_ff-wide projections of the MLP input: 2 when gated (gate, up), else 1
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    parameter_bytes: int
    dtype_bytes: int  # of the weights

    @classmethod
    def from_model(cls, model) -> "ModelShape":
        from lm.adapters import adapter_for  # lm.adapters imports nothing of this module

        adapter = adapter_for(model)
        config = model.config.get_text_config()
        width, ffn_width = adapter.widths(model)
        mlp = model.get_submodule(adapter.mlp_name(0))
        activations = sum(
            1 for m in mlp.modules()
            if isinstance(m, torch.nn.Linear) and m.out_features == ffn_width and m.in_features == width
        ) or 1  # GPT-2's Conv1D is not an nn.Linear: one projection up
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or width // heads
        weight = next(model.parameters())
        return cls(
            layers=adapter.num_layers(model),
            width=width,
            ffn_width=ffn_width,
            ffn_activations=activations,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            vocab=model.get_output_embeddings().weight.shape[0],
            parameter_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
            dtype_bytes=weight.element_size(),
        )

    @classmethod
    def from_config(cls, config, dtype: torch.dtype = torch.float32) -> "ModelShape":
        """The shape of the model `config` describes, weights in `dtype`, without any weights:
        the model is built on the meta device (no memory), so a 70B config costs nothing."""
        from transformers import AutoModelForCausalLM

        from lm.loading import quiet_transformers

        with torch.device("meta"), quiet_transformers():
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return cls.from_model(model)

    def weights_in(self, dtype_bytes: int) -> int:
        """The weights' bytes in another precision."""
        return self.parameter_bytes // self.dtype_bytes * dtype_bytes


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def sequence_counts(sizes: Sequence[int]) -> str:
    """"3 × 10, 1 × 4" for chunk sizes [10, 10, 10, 4]: how a run was split, for messages."""
    counts: dict[int, int] = {}
    for size in sizes:
        counts[size] = counts.get(size, 0) + 1
    return ", ".join(f"{n} × {size}" for size, n in counts.items())


def block_token_bytes(shape: ModelShape) -> int:
    """Bytes per token of one block's working set in a forward without autograd, in the
    weights' precision: the residual stream and its normed copies, queries/keys/values, and the
    MLP's d_ff-wide activations (gate and up, their product). Attention scores come on top
    (`attention_bytes`), and so does whatever the caller keeps per token."""
    b = shape.dtype_bytes
    mlp = (shape.ffn_activations + 1) * shape.ffn_width
    return (4 * shape.width + mlp + (shape.heads + 2 * shape.kv_heads) * shape.head_dim) * b


def attention_bytes(shape: ModelShape, tokens: int) -> int:
    """One sequence's attention scores in one block (float32, as eager attention and the CPU's
    math kernel hold them)."""
    return shape.heads * tokens * tokens * 4


def cache_token_bytes(shape: ModelShape) -> int:
    """Bytes per token of the key/value cache over every layer (a Hugging Face forward fills
    the cache whenever `use_cache` is on, the default, and holds it until it returns)."""
    return shape.layers * 2 * shape.kv_heads * shape.head_dim * shape.dtype_bytes


def logit_row_bytes(shape: ModelShape, float32_buffers: int) -> int:
    """One row of output-head logits: the head's output in the weights' precision, its float32
    copy (none when the weights are float32), and `float32_buffers` more float32 rows."""
    copy = 0 if shape.dtype_bytes == 4 else 4
    return shape.vocab * (shape.dtype_bytes + copy + 4 * float32_buffers)


# What the scorers' batches are sized for. Scoring: a row of `lm.scoring.TOKENS_PER_ROW`
# padded tokens (the scorer's own cap per row of its batch), every one of them a target
# position (long targets, perplexity pieces). Generation: a prompt of that many tokens
# continued by `GENERATION_NEW_TOKENS` (the fluency metric's length, as in ROME and MEMIT).
# Longer generations rely on `halving_batch_on_out_of_memory`.
GENERATION_NEW_TOKENS = 100


def scoring_row_bytes(shape: ModelShape, tokens: int) -> int:
    """Peak bytes one row of `tokens` padded tokens adds to a teacher-forced scoring batch:
    the forward's widest point and its key/value cache, and float32 log-softmax over the
    vocabulary at every position (the worst case: every position is a target)."""
    per_token = block_token_bytes(shape) + cache_token_bytes(shape) + logit_row_bytes(shape, 1)
    return tokens * per_token + attention_bytes(shape, tokens)


def generation_row_bytes(shape: ModelShape, prompt_tokens: int, new_tokens: int) -> int:
    """Peak bytes one row adds to a generation batch: the key/value cache of its prompt and
    new tokens, the prompt's forward (prefill) at its widest point, and the logits of the one
    position each step reads with the sampling buffers (probabilities, top-k and suppressed-
    token copies of the scores)."""
    cache = (prompt_tokens + new_tokens) * cache_token_bytes(shape)
    prefill = prompt_tokens * block_token_bytes(shape) + attention_bytes(shape, prompt_tokens)
    return cache + prefill + logit_row_bytes(shape, 4)


def scorer_batch_size(model, budget: MemoryBudget | None = None, most: int | None = None) -> int:
    """Rows per scoring and generation batch of an `lm.scoring.LMScorer` on `model`: the most
    rows (at most `most`, default the scorer's own default) whose scoring batch and generation
    batch (`scoring_row_bytes`, `generation_row_bytes`) fit the room `budget` (default
    `MemoryBudget.resolve`) leaves now. Padded tokens per scoring batch follow the rows (the
    scorer allows `TOKENS_PER_ROW` per row). At least 1."""
    from lm.scoring import BATCH_SIZE, TOKENS_PER_ROW  # lm.scoring imports this module

    shape = ModelShape.from_model(model)
    device = next(model.parameters()).device
    room = (budget or MemoryBudget.resolve(device)).room(device)
    rows = most or BATCH_SIZE
    row_bytes = max(scoring_row_bytes(shape, TOKENS_PER_ROW),
                    generation_row_bytes(shape, TOKENS_PER_ROW, GENERATION_NEW_TOKENS))
    return chunk_for(room, [row_bytes] * rows)


Method = TypeVar("Method", bound=Callable)


def halving_batch_on_out_of_memory(method: Method) -> Method:
    """For a scorer method that batches by `self.batch_size`: when a call runs out of memory
    (`is_out_of_memory`), the scorer's batch size is halved — for this call and later ones —
    and the call is made again from the start (scoring is a pure function of its inputs;
    seeded sampling re-seeds, so the texts are those of the smaller batch); at 1 it re-raises."""

    @functools.wraps(method)
    def retrying(scorer, *args, **kwargs):
        while True:
            try:
                return method(scorer, *args, **kwargs)
            except Exception as error:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
                if not is_out_of_memory(error) or scorer.batch_size == 1:
                    raise
                release_memory(scorer.device)
                scorer.batch_size = max(1, scorer.batch_size // 2)

    return retrying  # type: ignore[return-value]
