"""What the batched value optimisation holds in memory, estimated from the model's shape.

`editors.values` runs every request's sequences (its bare prompt, one per context prefix, and
its drift probe) through the blocks from the edit layer l* up, forward and backward, at every
step; everything below l* and every position before the key token is computed once
(`editors.upper`). Per request the optimisation therefore holds, for each of its sequences
with P cached positions before the key token and S positions from it on:

- the cached state: the hidden state entering l* at the S positions, and the attention keys
  and values of all P + S positions in the U = layers − l* upper blocks (kept as one tensor);
- one step's autograd graph in those U blocks (weights are frozen, so the linear layers keep
  nothing; what stays is each norm's input, the MLP's d_ff-wide activations, the queries, the
  keys and values the attention concatenates and repeats over heads, and the attention
  probabilities);
- float32 logits over the vocabulary only at the rows a loss reads (each target token of each
  prompt, and the key token of the drift probe), with log-softmax and gradient buffers.

The counts below follow those tensors in the Hugging Face decoder blocks (eager attention, the
CPU path of a bf16 copy); `perf/editing.py` and `tests/test_memory_plan.py` check the estimate
against the measured peak. Requests are optimised independently, so a chunk of k requests
costs k times as much and the chunk is the largest k that fits the budget's room.

The spread's key reads (`editors.keys.LayerwiseKeys`) are chunked by requests the same way,
from `spread_request_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lm.memory import ModelShape, attention_bytes, block_token_bytes, chunk_for

FLOAT32 = 4


@dataclass(frozen=True)
class PromptRow:
    """One sequence of a request: `prefix` cached positions, `suffix` recomputed ones, and how
    many logit rows its loss reads (`target_rows` target tokens, `kl_rows` drift rows)."""

    prefix: int
    suffix: int
    target_rows: int = 0
    kl_rows: int = 0


def sequence_bytes(shape: ModelShape, upper: int, seq: PromptRow, compute_bytes: int, eager: bool = True) -> int:
    """Peak bytes one sequence adds to a step: cached state, autograd graph and logits.
    `eager`: the attention keeps its probabilities for backward (eager attention; the fused
    kernels recompute them)."""
    d, b = shape.width, compute_bytes
    full = seq.prefix + seq.suffix
    kv_width = shape.kv_heads * shape.head_dim
    q_width = shape.heads * shape.head_dim
    cached = seq.suffix * d * b + upper * 2 * full * kv_width * b
    # Per block: two norms (a float32 copy of their input, its normalised form, the output);
    # queries; the concatenated keys/values and, with grouped heads, their per-head repeat;
    # the probabilities (float32 softmax, then cast); the MLP's d_ff-wide activations.
    norms = 2 * seq.suffix * d * (2 * FLOAT32 + b)
    repeat = 2 * full * q_width * b if shape.heads != shape.kv_heads else 0
    attention = seq.suffix * q_width * b + 2 * full * kv_width * b + repeat
    if eager:
        attention += shape.heads * seq.suffix * full * (FLOAT32 + b)
    mlp = (shape.ffn_activations + 1) * seq.suffix * shape.ffn_width * b
    graph = upper * (norms + attention + mlp) + seq.suffix * d * (2 * FLOAT32 + b)  # + final norm
    # Target rows: the head's output, its float32 copy, log-softmax kept for backward, gradient.
    # Drift rows: the same plus exp, difference, product and the kept unedited log-probabilities.
    logits = shape.vocab * (seq.target_rows * (b + 3 * FLOAT32) + seq.kl_rows * (b + 6 * FLOAT32))
    return cached + graph + logits


@dataclass(frozen=True)
class RequestLengths:
    """Token counts of a typical request (for a plan made before any request is tokenised).

    The defaults are the means over 100 CounterFact test requests with the embedded model's
    tokenizer (`COUNTERFACT_MEANS`); larger vocabularies split text into fewer tokens.
    """

    prompt: float  # tokens of the bare rewriting prompt
    key_position: float  # index of the key token in it (the subject's last token)
    target: float  # target tokens
    context_prefixes: int  # number of context prefixes (hparams.n_templates)
    prefix_tokens: float  # tokens one context prefix adds before the prompt
    essence_key_position: float | None  # key token of "{subject} is a"; None when KL is off

    def sequences(self) -> list[PromptRow]:
        suffix = self.prompt - self.key_position + self.target - 1
        rows = [PromptRow(self.key_position, suffix, target_rows=self.target)]
        rows += [PromptRow(self.key_position + self.prefix_tokens, suffix, target_rows=self.target)
                 for _ in range(self.context_prefixes)]
        if self.essence_key_position is not None:
            rows.append(PromptRow(self.essence_key_position, 1, kl_rows=1))
        return rows


# Means over the first 100 CounterFact test requests, embedded tokenizer, 5 prefixes of 10 tokens.
COUNTERFACT_MEANS = dict(prompt=8.8, key_position=4.3, target=1.24, prefix_tokens=9.9, essence_key_position=3.7)


def typical_lengths(hparams, prompt: float | None = None, target: float | None = None) -> RequestLengths:
    """CounterFact-like request lengths under `hparams` (its context prefixes and KL term);
    `prompt` / `target` replace the CounterFact means (the key token stays mid-prompt)."""
    means = dict(COUNTERFACT_MEANS)
    if prompt is not None:
        means.update(prompt=prompt, key_position=prompt * means["key_position"] / means["prompt"])
    if target is not None:
        means["target"] = target
    means["prefix_tokens"] *= hparams.template_len / 10
    if hparams.kl_factor <= 0:
        means["essence_key_position"] = None
    return RequestLengths(context_prefixes=hparams.n_templates, **means)


def request_bytes(shape: ModelShape, layer: int, sequences: Sequence[PromptRow], compute_bytes: int,
                  eager: bool = True) -> int:
    """Peak bytes of one request's sequences, with δ added at block `layer` (l*)."""
    upper = shape.layers - layer
    return int(sum(sequence_bytes(shape, upper, seq, compute_bytes, eager) for seq in sequences))


# What a process holds besides tensors: the interpreter, torch and transformers on a CPU (the
# measured RSS after importing them, ~0.5 GB), the CUDA context on a GPU (not counted by torch's
# allocator, but taken from the device).
RUNTIME_BYTES = 500 * 10**6


@dataclass(frozen=True)
class ValuePlan:
    """The estimated peak of a key–value edit's value optimisation, and the chunk it would use."""

    batch: int
    weights_bytes: int  # the model's weights
    copy_bytes: int  # the copy in the optimisation's precision (0 when the weights already are)
    statistics_bytes: int  # covariance statistics of the edited layers (float64, host memory)
    request_bytes: int  # one typical request's optimisation
    runtime_bytes: int  # interpreter, libraries, CUDA context
    budget: int | None  # the budget planned for; None means unlimited (one chunk)
    on_cpu: bool = True  # the statistics live in host memory: on the device only when it is the CPU

    @property
    def fixed_bytes(self) -> int:
        """What the process holds whatever the chunk."""
        held = self.runtime_bytes + self.weights_bytes + self.copy_bytes
        return held + (self.statistics_bytes if self.on_cpu else 0)

    @property
    def chunk(self) -> int:
        if self.budget is None:
            return self.batch
        return chunk_for(self.budget - self.fixed_bytes, [self.request_bytes] * self.batch)

    @property
    def fits(self) -> bool:
        """Whether even one request fits the budget on top of what is held anyway."""
        return self.budget is None or self.peak_bytes(1) <= self.budget

    def peak_bytes(self, chunk: int | None = None) -> int:
        """The process's estimated peak on the device with `chunk` requests at once (default:
        the plan's chunk)."""
        return self.fixed_bytes + (self.chunk if chunk is None else chunk) * self.request_bytes


def plan_values(shape: ModelShape, hparams, batch: int, compute_bytes: int, max_memory: int | None,
                lengths: RequestLengths | None = None, on_cpu: bool = True) -> ValuePlan:
    """The plan for `batch` requests edited with `hparams` (a key–value editor's) on a model of
    `shape`, optimising in `compute_bytes`-byte floats, within `max_memory` bytes (None:
    unlimited). Statistics count d_ff² float64 per edited layer. As `editors.values.forward_copy`
    does, a compute copy on a CPU runs eager attention; everything else the model's default."""
    lengths = lengths or typical_lengths(hparams)
    copy = compute_bytes != shape.dtype_bytes
    return ValuePlan(
        batch=batch,
        weights_bytes=shape.parameter_bytes,
        copy_bytes=shape.weights_in(compute_bytes) if copy else 0,
        statistics_bytes=len(hparams.layers) * shape.ffn_width**2 * 8,
        request_bytes=request_bytes(shape, hparams.last_layer, lengths.sequences(), compute_bytes,
                                    eager=copy and on_cpu),
        runtime_bytes=RUNTIME_BYTES,
        budget=max_memory,
        on_cpu=on_cpu,
    )


def spread_request_bytes(shape: ModelShape, contexts: int, tokens: int) -> int:
    """Peak bytes one request adds to a read of the spread (`editors.keys.LayerwiseKeys`): its
    `contexts` sequences of `tokens` padded tokens run forward without autograd through the
    blocks up to the layer read, keeping the MLP key input (d_ff wide) and the block's input
    for the next read besides their selected cached inputs."""
    kept = (shape.ffn_width + 2 * shape.width) * shape.dtype_bytes
    return contexts * (tokens * (block_token_bytes(shape) + kept) + attention_bytes(shape, tokens))
