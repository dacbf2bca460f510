"""Training a retrieval network (RECIPE, Chen et al. 2024, §4.4): losses, loop, validation,
checkpoint and resume.

Frozen: the LLM and the knowledge encoder (its features precomputed, retrieval/features.py).
Trained with Adam: the network's projections, prompt encoder, sentinel and InfoNCE temperature.

Each step draws one *retrieval batch* of edits from one benchmark (so negatives are as alike as
test batches are) and uses its first edits as the *edit batch*:
  - edit losses (edit batch, prompts through the LLM): reliability and generality NLL of the
    target after prompt ⊕ question, and locality KL(p(q_l) ‖ p(prompt ⊕ q_l)) on the probe's
    ground-truth positions;
  - prompt-learning losses (retrieval batch): neighbour-oriented InfoNCE (q_e, q_g -> own key
    among the batch's keys + sentinel) and sentinel-oriented InfoNCE (every locality probe of the
    batch -> sentinel, a hard negative; q_e, q_g -> sentinel once their own key is removed).
    Entries whose key text equals the positive's (same question, MedREK) are no negatives.
All weights are 1 except `locality_weight`. The InfoNCE temperature is learned (a fixed one
collapsed in the probe of §8) and retrieval batches are larger than edit batches: the features
are precomputed, so they cost almost nothing.

Resumable: `state.safetensors` in the run folder holds the network, Adam's moments, the
sampler's RNG state, the step, the loss and validation history and the training time (safetensors
+ JSON header, no pickle); `best.safetensors` is the network that scored best on validation.
Every random choice (batches, rephrasings, probes) comes from that one saved generator, so a
resumed run continues exactly as an uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from data.requests import EditRequest
from lm.files import atomic_path
from lm.precision import bf16_is_fast
from lm.scoring import pad_sequences, positions_from_mask
from retrieval.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    read_checked,
    save_network,
    tensor_checksum,
)
from retrieval.editor import RetrievalEditor
from retrieval.features import FeatureTable
from retrieval.injection import prompted_forward, takes_position_ids
from retrieval.memory import ModelIdentity
from retrieval.network import NetworkConfig, RetrievalNetwork, statement_text

STATE_FORMAT = "editscope.retrieval_training_state"
STATE_FILE = "state.safetensors"
BEST_FILE = "best.safetensors"

# Scores one editor on one benchmark's held-out edits: (editor, benchmark name, requests) ->
# {"efficacy", "generality", "locality", "locality_mean", "retrieval": {"correct", "unwanted", ...}}.
# The training command passes the comparison harness here, so validation numbers are the
# suite's own; tests may pass anything of that shape.
Evaluate = Callable[[RetrievalEditor, str, Sequence[EditRequest]], Mapping]


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. `steps` may grow between runs of one training; nothing else may change."""

    steps: int
    learning_rate: float = 1e-3  # retriever: projections to keys/queries, sentinel, temperature
    # The prompt path gets its own, smaller rate: Adam moves every weight by ~lr per step, and a
    # d x d projection of token embeddings (entries ~0.1) then shifts each prompt entry by up to
    # d * lr * 0.1 — at 1e-3 that undid the copy initialisation within 50 steps (NLL 2 -> 9).
    prompt_learning_rate: float = 1e-4
    edit_batch_size: int = 8
    retrieval_batch_size: int = 64
    seed: int = 0
    locality_weight: float = 1.0
    train_prompts: bool = True  # edit losses through the LLM (the slow part)
    train_retriever: bool = True  # InfoNCE losses (features only, fast)
    # Edit losses on every k-th step only: the retriever needs many more steps than the LLM
    # path can afford, and this keeps one joint objective when they share weights (RECIPE).
    edit_every: int = 1
    # bf16 autocast of the frozen LLM: 2.2x faster fwd+bwd with AMX, ~20x slower on an AVX2-only CPU
    # (lm.precision.bf16_is_fast), so the default asks the CPU. Part of the training's settings.
    llm_bf16: bool = field(default_factory=bf16_is_fast)
    validate_every: int = 250
    checkpoint_every: int = 50
    # Train statements the encoder slots' projection was aligned on before step 1 (0: random
    # init). The train command fits it (retrieval/alignment.py); kept here so the log says so.
    aligned_statements: int = 0
    # Relative chance of each benchmark supplying a step's batch (absent: 1). Empty: uniform, drawn
    # exactly as before this setting existed, so earlier runs' commands still reproduce them.
    benchmark_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        too_small = min(self.steps, self.edit_batch_size, self.edit_every) < 1
        if too_small or self.retrieval_batch_size < self.edit_batch_size:
            raise ValueError(
                "steps, edit_batch_size and edit_every must be at least 1, and retrieval_batch_size "
                "at least edit_batch_size."
            )
        if not (self.train_prompts or self.train_retriever):
            raise ValueError("Train the prompts, the retriever, or both.")
        if any(not 0 <= weight < math.inf for weight in self.benchmark_weights.values()):
            raise ValueError(f"Benchmark weights must be finite and at least 0: {self.benchmark_weights}.")

    def check_benchmarks(self, names) -> None:
        """Refuse weights that name a benchmark not trained on or leave every one of `names` no chance."""
        weights = self.benchmark_weights
        if set(weights) - set(names) or (weights and not any(weights.get(name, 1.0) > 0 for name in names)):
            raise ValueError(f"Benchmark weights {weights} must name benchmarks trained on "
                             f"({', '.join(sorted(names))}) and leave one of them a chance.")

    def same_training(self, other: "TrainingConfig") -> bool:
        return dataclasses.replace(self, steps=1) == dataclasses.replace(other, steps=1)


@dataclass(frozen=True)
class TrainingEvent:
    """Reported to the progress callback after every step (`validation` after a validation)."""

    step: int
    steps: int
    losses: Mapping[str, float]
    validation: Mapping | None = None


# ----- losses ---------------------------------------------------------------------------------


def retrieval_losses(
    network: RetrievalNetwork,
    encoder,
    features: FeatureTable,
    batch: Sequence[EditRequest],
    rephrasings: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Neighbour- and sentinel-oriented InfoNCE over one retrieval batch (see module docstring)."""
    key_texts = [network.key_text(request) for request in batch]
    keys = network.keys(features(key_texts))  # [B, r]
    candidates = torch.cat([keys, network.sentinel_key(encoder)])  # [B + 1, r]
    size = len(batch)
    sentinel = torch.full((size,), size, dtype=torch.long)
    own = torch.arange(size)
    same_key = torch.tensor([[a == b for b in key_texts] for a in key_texts])
    with_sentinel = torch.ones(size, 1, dtype=torch.bool)
    # Neighbour: own key, every key with another text, and the sentinel compete.
    neighbour_allowed = torch.cat([~same_key | torch.eye(size, dtype=torch.bool), with_sentinel], 1)
    # Sentinel: the same without the own key (and its duplicates).
    sentinel_allowed = torch.cat([~same_key, with_sentinel], 1)

    def info_nce(queries, allowed, targets):
        logits = network.logit_scale * queries @ candidates.T
        return F.cross_entropy(logits.masked_fill(~allowed, float("-inf")), targets)

    edit_queries = network.queries(features([request.prompt for request in batch]))
    general_queries = network.queries(features(list(rephrasings)))
    probes = [probe.prompt for request in batch for group in request.locality.values() for probe in group]
    neighbour = info_nce(edit_queries, neighbour_allowed, own) + info_nce(general_queries, neighbour_allowed, own)
    to_sentinel = info_nce(edit_queries, sentinel_allowed, sentinel) + info_nce(
        general_queries, sentinel_allowed, sentinel
    )
    if probes:
        probe_queries = network.queries(features(probes))
        everything = torch.ones(len(probes), size + 1, dtype=torch.bool)
        to_sentinel = to_sentinel + info_nce(
            probe_queries, everything, torch.full((len(probes),), size, dtype=torch.long)
        )
    return {"neighbour_nce": neighbour, "sentinel_nce": to_sentinel}


def edit_losses(
    network: RetrievalNetwork,
    encoder,
    llm,
    tok,
    features: FeatureTable,
    batch: Sequence[EditRequest],
    rephrasings: Sequence[str],
    probes: Sequence[tuple[str, str] | None],
    bf16: bool,
) -> dict[str, torch.Tensor]:
    """Reliability and generality NLL and locality KL of the batch's own prompts (gold retrieval)."""
    statements = [statement_text(request) for request in batch]
    prompts = network.statement_prompts(features(statements), statements, llm, tok, encoder)
    with_probe = [row for row, probe in enumerate(probes) if probe is not None]
    pairs = (
        [(request.prompt, request.target_new) for request in batch]
        + [(rephrasing, request.target_new) for rephrasing, request in zip(rephrasings, batch)]
        + [probes[row] for row in with_probe]
    )
    ids, mask, lengths = _left_padded(tok, pairs, llm)
    keep = max(lengths) + 1
    repeated = torch.cat([prompts, prompts, prompts[with_probe]])
    device = ids.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        edited = _last_logits(llm, keep, prompted_forward, ids, mask, repeated.to(device))
    log_probs = edited.float().log_softmax(-1)[:, :-1]  # position k predicts token k + 1
    labels = ids[:, ids.shape[1] - keep + 1 :]
    first_target = keep - 1 - torch.tensor(lengths, device=device)
    is_target = torch.arange(keep - 1, device=device)[None, :] >= first_target[:, None]
    token_nll = -log_probs.gather(-1, labels[..., None]).squeeze(-1)
    row_nll = (token_nll * is_target).sum(1) / is_target.sum(1)
    size = len(batch)
    losses = {"reliability": row_nll[:size].mean(), "generality": row_nll[size : 2 * size].mean()}
    if with_probe:
        local = slice(2 * size, None)
        local_ids, local_mask = ids[local], mask[local]
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            plain = _last_logits(llm, keep, _plain_forward, local_ids, local_mask)
        plain_log_probs = plain.float().log_softmax(-1)[:, :-1]
        token_kl = (plain_log_probs.exp() * (plain_log_probs - log_probs[local])).sum(-1)
        target = is_target[local]
        losses["locality_kl"] = ((token_kl * target).sum(1) / target.sum(1)).mean()
    else:
        losses["locality_kl"] = torch.zeros(())
    return losses


def _left_padded(tok, pairs, llm) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(input_ids, attention_mask, target lengths) of prompt + target pairs, left-padded so that
    every row's target ends at the last column. Tokenised as LMScorer does: the prompt with the
    tokenizer's special tokens, the target as " " + target without them."""
    prompt_ids = tok([prompt for prompt, _ in pairs])["input_ids"]
    target_ids = tok([" " + target.strip() for _, target in pairs], add_special_tokens=False)["input_ids"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    device = llm.get_input_embeddings().weight.device
    ids, mask = pad_sequences([p + t for p, t in zip(prompt_ids, target_ids)], pad, "left", device)
    return ids, mask, [len(t) for t in target_ids]


def _plain_forward(model, input_ids, attention_mask, **kwargs):
    if takes_position_ids(model):
        kwargs["position_ids"] = positions_from_mask(attention_mask)
    return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def _last_logits(model, keep: int, forward: Callable, *args) -> torch.Tensor:
    """Logits of the last `keep` positions; asks the model for only those when it can, since the
    LM head over every position is a large share of a small model's compute."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        return forward(model, *args, logits_to_keep=keep).logits
    return forward(model, *args).logits[:, -keep:]


# ----- the loop -------------------------------------------------------------------------------


class Trainer:
    """One training run in a folder; `run()` continues it up to `config.steps`."""

    def __init__(
        self,
        network: RetrievalNetwork,
        encoder,
        llm,
        tok,
        train: Mapping[str, Sequence[EditRequest]],
        validation: Mapping[str, Sequence[EditRequest]],
        features: FeatureTable,
        config: TrainingConfig,
        run_dir: str | Path,
        llm_identity: ModelIdentity,
        evaluate: Evaluate,
    ):
        self.network, self.encoder, self.llm, self.tok = network, encoder, llm, tok
        self.train_sets = {name: tuple(requests) for name, requests in train.items() if requests}
        config.check_benchmarks(self.train_sets)
        self.validation = {name: tuple(requests) for name, requests in validation.items() if requests}
        self.features, self.config = features, config
        self.run_dir = Path(run_dir)
        self.llm_identity = llm_identity
        self.evaluate = evaluate
        self.encoder_identity = encoder.identity()
        encoder.eval().requires_grad_(False)
        llm.eval().requires_grad_(False)
        retriever, prompt = network.parameter_groups()
        self.optimizer = torch.optim.Adam([
            {"params": retriever, "lr": config.learning_rate},
            {"params": prompt, "lr": config.prompt_learning_rate},
        ])
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.seconds = 0.0
        self.history: dict[str, list] = {"loss": [], "validation": []}
        self.best: dict | None = None
        if (self.run_dir / STATE_FILE).is_file():
            self._load_state()

    # one step

    def train_step(self) -> dict[str, float]:
        config = self.config
        records = self.train_sets[self._pick_benchmark()]
        order = torch.randperm(len(records), generator=self.generator)[: config.retrieval_batch_size]
        batch = [records[int(i)] for i in order]
        rephrasings = [self._pick(r.rephrase_prompts) or r.prompt for r in batch]
        probes = [self._pick([(p.prompt, p.ground_truth) for g in r.locality.values() for p in g]) for r in batch]

        self.network.train()
        losses: dict[str, torch.Tensor] = {}
        if config.train_retriever:
            losses.update(retrieval_losses(self.network, self.encoder, self.features, batch, rephrasings))
        if config.train_prompts and self.step % config.edit_every == 0:
            edit = slice(0, config.edit_batch_size)
            losses.update(edit_losses(
                self.network, self.encoder, self.llm, self.tok, self.features, batch[edit], rephrasings[edit],
                probes[edit], config.llm_bf16,
            ))
            losses["locality_kl"] = losses["locality_kl"] * config.locality_weight
        total = sum(losses.values())
        if not math.isfinite(float(total.detach())):
            # Stepping on a NaN would poison every weight; stop with the last good state on disk.
            raise FloatingPointError(
                f"Training loss is not finite at step {self.step + 1} ({float(total)}); "
                f"the last saved state in {self.run_dir} is unaffected."
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        report = {name: float(value.detach()) for name, value in losses.items()}
        report["loss"] = float(total.detach())
        report["logit_scale"] = float(self.network.logit_scale.detach())
        return report

    def _pick_benchmark(self) -> str:
        names = sorted(self.train_sets)
        weights = self.config.benchmark_weights
        if not weights:
            return names[int(torch.randint(len(names), (1,), generator=self.generator))]
        chances = torch.tensor([float(weights.get(name, 1.0)) for name in names])
        return names[int(torch.multinomial(chances, 1, generator=self.generator))]

    def _pick(self, options):
        """One option chosen with the saved generator (None if there is none)."""
        if not options:
            return None
        return options[int(torch.randint(len(options), (1,), generator=self.generator))]

    # validation

    def validate(self) -> dict:
        """Per benchmark scores of the current network on the held-out batches, and the score
        used to pick the best checkpoint (mean of efficacy, generality and locality, or of
        correct retrieval and 1 - unwanted retrieval when the prompts are not trained)."""
        editor = RetrievalEditor(self.network, self.encoder, source="the network in training")
        report, scores = {"step": self.step}, []
        for name, requests in sorted(self.validation.items()):
            evaluation = dict(self.evaluate(editor, name, requests))
            report[name] = evaluation
            if self.config.train_prompts:
                scores.append((evaluation["efficacy"] + evaluation["generality"] + evaluation["locality_mean"]) / 3)
            else:
                rates = evaluation["retrieval"]
                scores.append((rates["correct"] + 1 - rates["unwanted"]) / 2)
        report["score"] = sum(scores) / len(scores)
        return report

    # the loop

    def run(self, progress: Callable[[TrainingEvent], None] | None = None) -> dict | None:
        """Train up to `config.steps`, validating and checkpointing on schedule; returns `best`."""
        config = self.config
        while self.step < config.steps:
            started = time.perf_counter()
            losses = self.train_step()
            self.step += 1
            validation = None
            if self.validation and (self.step % config.validate_every == 0 or self.step == config.steps):
                validation = self.validate()
                self.history["validation"].append(validation)
                if self.best is None or validation["score"] > self.best["score"]:
                    self.best = {"step": self.step, "score": validation["score"]}
                    save_network(self.run_dir / BEST_FILE, self.network,
                                 llm=self.llm_identity, encoder=self.encoder_identity)
            self.seconds += time.perf_counter() - started
            self.history["loss"].append({"step": self.step, **losses})
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save_state()
            if progress is not None:
                progress(TrainingEvent(self.step, config.steps, losses, validation))
        return self.best

    # state on disk

    def save_state(self) -> None:
        tensors = {f"network.{name}": value.detach().cpu().contiguous()
                   for name, value in self.network.state_dict().items()}
        optimizer = self.optimizer.state_dict()
        for index, slots in optimizer["state"].items():
            for slot, value in slots.items():
                tensors[f"optimizer.{index}.{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tensors["rng.sampler"] = self.generator.get_state()
        header = {
            "format": STATE_FORMAT,
            "format_version": FORMAT_VERSION,
            "step": self.step,
            "seconds": self.seconds,
            "training": dataclasses.asdict(self.config),
            "network": self.network.config.to_json(),
            "llm": dataclasses.asdict(self.llm_identity),
            "encoder": dataclasses.asdict(self.encoder_identity),
            "param_groups": [{k: v for k, v in group.items() if k != "params"}
                             for group in optimizer["param_groups"]],
            "history": self.history,
            "best": self.best,
        }
        header["checksum"] = tensor_checksum(header, tensors)
        with atomic_path(self.run_dir / STATE_FILE) as temporary:
            save_file(tensors, temporary, metadata={STATE_FORMAT: json.dumps(header)})

    def _load_state(self) -> None:
        path = self.run_dir / STATE_FILE
        header, tensors = read_checked(path, STATE_FORMAT, "Training state")
        saved = TrainingConfig(**header["training"])
        if not saved.same_training(self.config):
            raise CheckpointError(
                f"Training state {path} was made with other settings ({saved}); "
                "only `steps` may change when resuming."
            )
        if NetworkConfig.from_json(header["network"]) != self.network.config:
            raise CheckpointError(f"Training state {path} is for another network architecture.")
        if ModelIdentity(**header["llm"]) != self.llm_identity:
            raise CheckpointError(f"Training state {path} was made with another LLM.")
        if ModelIdentity(**header["encoder"]) != self.encoder_identity:
            raise CheckpointError(f"Training state {path} was made with another knowledge encoder.")
        self.network.load_state_dict(
            {name[len("network."):]: value for name, value in tensors.items() if name.startswith("network.")}
        )
        state: dict[int, dict] = {}
        for name, value in tensors.items():
            if name.startswith("optimizer."):
                _, index, slot = name.split(".", 2)
                state.setdefault(int(index), {})[slot] = value
        # Parameters are numbered consecutively across the optimiser's groups.
        groups, first = [], 0
        for group, live in zip(header["param_groups"], self.optimizer.param_groups):
            groups.append({**group, "params": list(range(first, first + len(live["params"])))})
            first += len(live["params"])
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        self.generator.set_state(tensors["rng.sampler"])
        self.step, self.seconds = int(header["step"]), float(header["seconds"])
        self.history, self.best = header["history"], header["best"]


def loss_curve(history: Mapping[str, list], every: int) -> list[dict]:
    """Mean of each loss over consecutive windows of `every` steps (for READMEs and reports)."""
    rows = history["loss"]
    curve = []
    for start in range(0, len(rows), every):
        window = rows[start : start + every]
        names = dict.fromkeys(name for row in window for name in row if name != "step")
        means = {}
        for name in names:  # with edit_every > 1 the edit losses are absent from some steps
            values = [row[name] for row in window if name in row]
            means[name] = sum(values) / len(values)
        curve.append({"step": window[-1]["step"], **means})
    return curve
