"""Batched value optimisation (MEMIT's `z` step), shared by MEMIT, PMET, MEMIT-Merge and AlphaEdit.

For each group of requests (one request per group for MEMIT; one subject per group for
MEMIT-Merge) a free vector δ_g is added to the output of one or more modules at layer l* (the
block for MEMIT, the attention and MLP outputs for PMET) at the key token of every rewriting
prompt of the group's requests, and trained with Adam so the model predicts each request's
target (MEMIT, Meng et al. ICLR 2023, §4; the decay term as in its reference code):

    loss_g = Σ_{r∈g} [ w_r · NLL_r + kl_factor · KL(p_δ ‖ p_0)_r ] + Σ_sites decay · ‖δ‖ / ‖h_0‖²

NLL_r is averaged per prompt over target tokens, then over the request's prompts (bare + context
prefixes); the KL is read at the key token of "{subject} is a". After every step each δ is
projected onto the ball of radius clamp · ‖h_0‖. A group whose mean member loss plus decay falls
below `early_stop` is frozen and its sequences leave the batch.

All groups train together: one forward/backward per step over every active sequence, one
[G, d] tensor per site. δ only changes positions from the key token on, and only layers from l*
up, so `editors.upper` computes the rest once; logits are taken only at target and KL rows.
Groups are independent (their losses share no parameters and Adam is element-wise), so this
equals optimising each group alone.

That independence is also what bounds memory: `optimise_values` runs the groups in consecutive
chunks, each chunk as many groups as the memory budget holds by the estimate of
`editors.memory_plan` (all of them when they fit), and halves a chunk that runs out anyway.
Inside a chunk everything above happens unchanged (`_optimise_chunk`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from editors.keys import KeySite
from editors.memory_plan import PromptRow, request_bytes
from editors.protocol import EditError
from editors.upper import SplitBatch, capture_upper_state, run_upper
from lm.adapters import adapter_for
from lm.hooks import add_at_positions, capture
from lm.memory import MemoryBudget, ModelShape, chunk_for, run_in_chunks
from lm.precision import cast_copy
from lm.progress import StageProgress
from lm.scoring import output_logits


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ValueOptions:
    """The optimisation budget and loss weights (from an editor's hparams)."""

    steps: int
    lr: float
    weight_decay: float
    clamp_factor: float
    kl_factor: float
    early_stop: float
    argmax_nll_weight: float = 1.0  # PMET: NLL weight of a request already predicted (0.1)
    # PMET: a group also stops once every target token of its members is the argmax and its KL
    # term (kl_factor · KL) is at most this (reference: 0.01); None: no such stop.
    argmax_stop_kl: float | None = None
    decay_weights: tuple[float, ...] = ()  # per site; empty means 1 for every site
    dtype: str = "float32"  # forward/backward precision of the model copy; δ stays float32

    @classmethod
    def from_hparams(cls, hparams, **changes) -> "ValueOptions":
        base = dict(
            steps=hparams.v_num_grad_steps,
            lr=hparams.v_lr,
            weight_decay=hparams.v_weight_decay,
            clamp_factor=hparams.clamp_norm_factor,
            kl_factor=hparams.kl_factor,
            early_stop=hparams.early_stop_loss,
            dtype=hparams.v_dtype,
        )
        return cls(**{**base, **changes})


@dataclass(frozen=True)
class ValueProblem:
    """What the value optimisation is asked: `sites[r]` are request r's key sites (bare prompt
    first), `essence[r]` its drift probe (or None), `targets[r]` its target token ids, `groups`
    lists request indices per δ, and `site_modules` the modules of block `layer` (l*, or the
    block itself) whose outputs receive δ."""

    layer: int
    sites: Sequence[Sequence[KeySite]]
    essence: Sequence[KeySite | None]
    targets: Sequence[Sequence[int]]
    groups: Sequence[Sequence[int]]
    site_modules: Sequence[str]

    def with_groups(self, groups: Sequence[Sequence[int]]) -> "ValueProblem":
        """The same requests, optimised for these groups only (a chunk, or a subset)."""
        return dataclasses.replace(self, groups=groups)


@dataclass(frozen=True)
class ValueResult:
    """Per group g and site: the unedited output h_0 (mean over the group's bare prompts) and δ."""

    sites: tuple[str, ...]
    initial: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    loss: torch.Tensor  # [G] last measured loss (mean member loss + decay)
    nll: torch.Tensor  # [G] mean member NLL at that point
    updates: torch.Tensor  # [G] Adam steps the group took
    seconds: float  # time spent in this call (through the value cache: lookups and writes too)
    reused_groups: int = 0  # groups taken from `editors.value_cache` instead of optimised now
    reused_seconds: float = 0.0  # what those groups cost when they were optimised
    chunks: tuple[int, ...] = ()  # groups per chunk optimised in this call, in order (none reused)

    def targets(self, site: str) -> torch.Tensor:
        """z = h_0 + δ at `site`, [G, d]."""
        return self.initial[site] + self.deltas[site]

    def group(self, index: int) -> "ValueResult":
        """Group `index` alone, as a one-group result (its `seconds` are left to the caller)."""
        pick = slice(index, index + 1)
        return dataclasses.replace(
            self,
            initial={s: h0[pick].clone() for s, h0 in self.initial.items()},
            deltas={s: d[pick].clone() for s, d in self.deltas.items()},
            loss=self.loss[pick].clone(),
            nll=self.nll[pick].clone(),
            updates=self.updates[pick].clone(),
            seconds=0.0,
            reused_groups=0,
            reused_seconds=0.0,
            chunks=(),
        )


def combine_results(parts: Sequence[tuple[Sequence[int], ValueResult]], n_groups: int) -> ValueResult:
    """Put the results of separately optimised (or reused) subsets of the groups back in group
    order; `parts` pairs each result with the group indices its rows stand for. Seconds and
    reuse counts add up."""
    first = parts[0][1]

    def scatter(get, fill: float) -> torch.Tensor:
        sample = get(first)
        out = torch.full((n_groups, *sample.shape[1:]), fill, dtype=sample.dtype)
        for chosen, result in parts:
            out[list(chosen)] = get(result)
        return out

    return dataclasses.replace(
        first,
        initial={s: scatter(lambda r, s=s: r.initial[s], 0.0) for s in first.sites},
        deltas={s: scatter(lambda r, s=s: r.deltas[s], 0.0) for s in first.sites},
        loss=scatter(lambda r: r.loss, float("nan")),
        nll=scatter(lambda r: r.nll, float("nan")),
        updates=scatter(lambda r: r.updates, 0),
        seconds=sum(result.seconds for _, result in parts),
        reused_groups=sum(result.reused_groups for _, result in parts),
        reused_seconds=sum(result.reused_seconds for _, result in parts),
        chunks=tuple(size for _, result in parts for size in result.chunks),
    )


@dataclass
class _Plan:
    """Every sequence of the batch, and where its loss terms are read, as flat index tensors."""

    prefixes: list[list[int]]
    suffixes: list[list[int]]
    row_group: torch.Tensor  # [N]
    bare_rows: torch.Tensor  # [R] each request's bare rewriting prompt
    token_row: torch.Tensor  # [T] rows/columns whose logits predict a target token
    token_col: torch.Tensor
    token_id: torch.Tensor
    token_weight: torch.Tensor  # 1 / (target length × prompts of the request)
    token_request: torch.Tensor
    kl_row: torch.Tensor  # [K] essence prompts (their key token is suffix column 0)
    kl_request: torch.Tensor
    request_group: torch.Tensor  # [R]
    group_size: torch.Tensor  # [G]


def _plan(
    sites: Sequence[Sequence[KeySite]],
    essence: Sequence[KeySite | None],
    targets: Sequence[Sequence[int]],
    groups: Sequence[Sequence[int]],
    use_kl: bool,
) -> _Plan:
    prefixes, suffixes, row_group, bare_rows = [], [], [], []
    tokens: list[tuple[int, int, int, float, int]] = []
    kl: list[tuple[int, int]] = []
    request_group = [0] * len(sites)
    for g, members in enumerate(groups):
        for r in members:
            request_group[r] = g
            target = list(targets[r])
            for c, site in enumerate(sites[r]):
                row = len(prefixes)
                if c == 0:
                    bare_rows.append((r, row))
                ids = list(site.ids) + target[:-1]
                prefixes.append(ids[: site.position])
                suffixes.append(ids[site.position :])
                row_group.append(g)
                first = len(site.ids) - 1 - site.position  # suffix column predicting target[0]
                weight = 1.0 / (len(target) * len(sites[r]))
                tokens.extend((row, first + j, t, weight, r) for j, t in enumerate(target))
            if use_kl and essence[r] is not None:
                site = essence[r]
                prefixes.append(list(site.ids[: site.position]))
                # Only the key token: later tokens of "{subject} is a" cannot change its logits.
                suffixes.append([site.ids[site.position]])
                row_group.append(g)
                kl.append((len(prefixes) - 1, r))
    bare = torch.tensor([row for _, row in sorted(bare_rows)], dtype=torch.long)
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return _Plan(
        prefixes=prefixes,
        suffixes=suffixes,
        row_group=as_long(row_group),
        bare_rows=bare,
        token_row=as_long([t[0] for t in tokens]),
        token_col=as_long([t[1] for t in tokens]),
        token_id=as_long([t[2] for t in tokens]),
        token_weight=torch.tensor([t[3] for t in tokens], dtype=torch.float32),
        token_request=as_long([t[4] for t in tokens]),
        kl_row=as_long([k[0] for k in kl]),
        kl_request=as_long([k[1] for k in kl]),
        request_group=as_long(request_group),
        group_size=torch.tensor([len(m) for m in groups], dtype=torch.float32),
    )


def forward_copy(model, dtype: str):
    """The model itself, or a copy in `dtype` for the optimisation's forward/backward."""
    runner = cast_copy(model, DTYPES[dtype])
    if runner is not model and runner.device.type == "cpu":
        # The CPU flash-attention kernel's backward was the largest single cost of a step (a
        # quarter of it; its queries are a few suffix tokens over a short cached prefix), where
        # plain matmul attention is several times cheaper: 61 s → 49 s for 6 steps of 20 MedCF++
        # requests in bf16 on one thread. Only the private copy is switched.
        runner.set_attn_implementation("eager")
    return runner


def optimise_values(
    model,
    problem: ValueProblem,
    options: ValueOptions,
    progress: StageProgress | None = None,
    memory: MemoryBudget | None = None,
) -> ValueResult:
    """Train one δ per group of `problem` and site; see the module docstring for the loss.

    The groups are optimised in consecutive chunks sized to fit `memory` (default
    `MemoryBudget.resolve`: `EDITSCOPE_MAX_MEMORY`, else a share of the device's free memory)
    by the estimate of `editors.memory_plan`; a chunk that runs out of memory anyway is halved
    and retried. Groups are independent, so chunking changes only speed and peak memory (the
    values agree with one whole-batch pass to float rounding: different batch shapes sum in a
    different order).
    """
    started = time.perf_counter()
    groups = problem.groups
    device = next(model.parameters()).device
    budget = memory or MemoryBudget.resolve(device)
    # The room is measured before the compute copy exists and the copy's size subtracted: on a
    # CPU the allocator keeps what the copy's casting freed, so RSS after it overstates its cost.
    room = budget.room(device)
    runner = forward_copy(model, options.dtype)
    shape = ModelShape.from_model(runner)
    room -= 0 if runner is model else shape.parameter_bytes
    costs = group_bytes(shape, next(runner.parameters()).element_size(), problem.layer,
                        problem.sites, problem.essence, problem.targets, groups, use_kl=options.kl_factor > 0,
                        eager=runner.config._attn_implementation == "eager")
    chunk = chunk_for(room, costs)
    # Progress counts steps over all chunks; halving a chunk re-plans the ones still to run.
    counts = {"steps": 0, "groups": 0, "chunks": math.ceil(len(groups) / chunk)}

    def chunk_progress(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, counts["steps"] + done, total * counts["chunks"])

    def optimise_chunk(chosen: list[int]) -> ValueResult:
        result = _optimise_chunk(runner, problem.with_groups([groups[g] for g in chosen]), options,
                                 chunk_progress, budget)
        counts["steps"] += options.steps
        counts["groups"] += len(chosen)
        return result

    def replan(size: int, _error: BaseException) -> None:
        done_chunks = counts["steps"] // options.steps
        counts["chunks"] = done_chunks + math.ceil((len(groups) - counts["groups"]) / size)

    parts = run_in_chunks(len(groups), chunk, optimise_chunk, device, replan)
    combined = combine_results(parts, len(groups))
    return dataclasses.replace(combined, seconds=time.perf_counter() - started)


def group_bytes(shape: ModelShape, compute_bytes: int, layer: int, sites: Sequence[Sequence[KeySite]],
                essence: Sequence[KeySite | None], targets: Sequence[Sequence[int]],
                groups: Sequence[Sequence[int]], use_kl: bool, eager: bool) -> list[int]:
    """The estimated peak bytes of each group's optimisation (`editors.memory_plan`), for a
    forward/backward in `compute_bytes`-byte floats (`eager`: with eager attention)."""
    def request(r: int) -> int:
        target = len(targets[r])
        rows = [PromptRow(site.position, len(site.ids) - site.position + target - 1, target_rows=target)
                for site in sites[r]]
        if use_kl and essence[r] is not None:
            rows.append(PromptRow(essence[r].position, 1, kl_rows=1))
        return request_bytes(shape, layer, rows, compute_bytes, eager)

    return [sum(request(r) for r in members) for members in groups]


def _optimise_chunk(
    runner,
    problem: ValueProblem,
    options: ValueOptions,
    progress: StageProgress | None,
    budget: MemoryBudget,
) -> ValueResult:
    """`optimise_values` for the requests of `problem.groups` in one batched pass (`runner` is
    the model copy the forward/backward runs on)."""
    started = time.perf_counter()
    layer, site_modules, groups = problem.layer, problem.site_modules, problem.groups
    adapter = adapter_for(runner)
    modules = [runner.get_submodule(name) for name in site_modules]
    original_groups = [list(members) for members in groups]
    sites, essence, targets, groups = _restricted_to(groups, problem.sites, problem.essence, problem.targets)
    plan = _plan(sites, essence, targets, groups, use_kl=options.kl_factor > 0)
    rows = _Buckets(runner, adapter, layer, plan.prefixes, plan.suffixes)

    n_groups, n_requests = len(groups), len(sites)
    deltas = [torch.zeros(n_groups, rows.width, requires_grad=True) for _ in site_modules]
    optimiser = torch.optim.Adam(deltas, lr=options.lr)
    decay_weights = options.decay_weights or (1.0,) * len(site_modules)
    initial: list[torch.Tensor] = []
    base_logprobs = None
    active = torch.ones(n_groups, dtype=torch.bool)
    loss_seen = torch.full((n_groups,), float("nan"))
    nll_seen = torch.full((n_groups,), float("nan"))
    updates = torch.zeros(n_groups, dtype=torch.long)
    view = _ActiveView.of(plan, active)

    for step in range(options.steps):
        first = step == 0
        recorded: list[dict[str, torch.Tensor]] = []

        def add_vectors(bucket_rows: torch.Tensor):
            vectors = [d[plan.row_group[bucket_rows]] for d in deltas]
            return _site_hooks(modules, vectors, torch.zeros(len(bucket_rows), dtype=torch.long), first, recorded)

        hidden = rows.run(add_vectors)  # [Σ rows × suffix length, d], see _Buckets
        if first:
            initial = _initial_outputs(recorded, rows, plan, groups, len(modules))

        token_hidden = hidden[rows.flat_index(view.token_row, view.token_col)]
        token_nll, hits = _token_terms(runner, token_hidden, view.token_id)
        request_nll = torch.zeros(n_requests).index_add(0, view.token_request, token_nll * view.token_weight)
        weight = torch.ones(n_requests)
        if options.argmax_nll_weight < 1:
            misses = torch.zeros(n_requests).index_add(0, view.token_request, (~hits).float())
            weight = torch.where(misses == 0, options.argmax_nll_weight, 1.0)
        request_kl = torch.zeros(n_requests)
        if len(view.kl_row):
            kl_hidden = hidden[rows.flat_index(view.kl_row, torch.zeros_like(view.kl_row))]
            logprobs = output_logits(runner, kl_hidden).log_softmax(-1)
            if first:
                base_logprobs = logprobs.detach()
            reference = base_logprobs[view.kl_index]
            kl = (logprobs.exp() * (logprobs - reference)).sum(-1)
            request_kl = request_kl.index_add(0, view.kl_request, kl)
        member = weight * request_nll + options.kl_factor * request_kl
        group_sum = torch.zeros(n_groups).index_add(0, plan.request_group, member)
        group_nll = torch.zeros(n_groups).index_add(0, plan.request_group, request_nll.detach())
        decay = sum(
            w * options.weight_decay * d.norm(dim=1) / h0.norm(dim=1).clamp_min(1e-12) ** 2
            for w, d, h0 in zip(decay_weights, deltas, initial)
        )
        criterion = (group_sum / plan.group_size + decay).detach()
        loss_seen[active] = criterion[active]
        nll_seen[active] = (group_nll / plan.group_size)[active]
        if progress:
            progress("values", step + 1, options.steps)

        done = criterion < options.early_stop
        if options.argmax_stop_kl is not None:
            done |= _argmax_and_kl_reached(view, hits, request_kl.detach(), options, plan, n_requests)
        active = active & ~done
        if step == options.steps - 1 or not active.any():
            break
        objective = (group_sum + decay)[active].sum()
        if first and n_groups > 1:
            # The first step's graph is alive (the costliest): a chunk over budget is halved.
            budget.check(next(runner.parameters()).device, f"Optimising {n_groups} value vectors at once")
        optimiser.zero_grad()
        objective.backward()
        _adam_step(optimiser, deltas, initial, active, options.clamp_factor)
        updates[active] += 1
        if not torch.equal(view.groups_active, active):
            view = _ActiveView.of(plan, active)
            rows.select(active[plan.row_group])

    result = ValueResult(
        sites=tuple(site_modules),
        initial={name: h0.detach() for name, h0 in zip(site_modules, initial)},
        deltas={name: d.detach().clone() for name, d in zip(site_modules, deltas)},
        loss=loss_seen,
        nll=nll_seen,
        updates=updates,
        seconds=time.perf_counter() - started,
        chunks=(n_groups,),
    )
    _check_finite(result, original_groups)
    return result


def _argmax_and_kl_reached(view: "_ActiveView", hits: torch.Tensor, request_kl: torch.Tensor,
                           options: ValueOptions, plan: _Plan, n_requests: int) -> torch.Tensor:
    """[G] PMET's stop (xpq-tech/PMET compute_zs): every target token of every member's prompts is
    the argmax, and the group's KL term is at most `argmax_stop_kl`."""
    misses = torch.zeros(n_requests).index_add(0, view.token_request, (~hits).float())
    scored = torch.zeros(n_requests).index_add(0, view.token_request, torch.ones(len(hits)))
    groups = len(plan.group_size)
    group_misses = torch.zeros(groups).index_add(0, plan.request_group, misses)
    group_scored = torch.zeros(groups).index_add(0, plan.request_group, scored)
    group_kl = torch.zeros(groups).index_add(0, plan.request_group, options.kl_factor * request_kl) / plan.group_size
    return (group_scored > 0) & (group_misses == 0) & (group_kl <= options.argmax_stop_kl)


def _restricted_to(groups, sites, essence, targets):
    """Only the requests of `groups` take part (a chunk, or MEMIT-Merge's subsets), re-indexed
    0… in group order; errors still name the caller's indices (`_check_finite`)."""
    included = [r for members in groups for r in members]
    local = {r: i for i, r in enumerate(included)}
    return (
        [sites[r] for r in included],
        [essence[r] for r in included],
        [targets[r] for r in included],
        [[local[r] for r in members] for members in groups],
    )


def _initial_outputs(recorded, rows: "_Buckets", plan: _Plan, groups, n_sites: int) -> list[torch.Tensor]:
    """h_0 per site: each request's unedited output at its bare prompt's key token, averaged
    over each group's members."""
    bare = rows.flat_index(plan.bare_rows, torch.zeros_like(plan.bare_rows))
    per_request = [
        torch.cat([r[str(i)].reshape(-1, rows.width) for r in recorded])[bare].float()
        for i in range(n_sites)
    ]
    return [group_mean(h, groups) for h in per_request]


def _adam_step(optimiser, deltas, initial, active: torch.Tensor, clamp_factor: float) -> None:
    """One Adam step for the active groups; frozen groups keep their vector, and every vector is
    projected back onto the ball of radius clamp_factor · ‖h_0‖."""
    before = [d.detach().clone() for d in deltas]
    optimiser.step()
    with torch.no_grad():
        for d, old, h0 in zip(deltas, before, initial):
            d[~active] = old[~active]
            limit = clamp_factor * h0.norm(dim=1)
            norm = d.norm(dim=1)
            d.mul_(torch.where(norm > limit, limit / norm.clamp_min(1e-12), 1.0)[:, None])


@dataclass(frozen=True)
class _ActiveView:
    """The loss terms of the rows of active groups (row ids stay global)."""

    groups_active: torch.Tensor
    token_row: torch.Tensor
    token_col: torch.Tensor
    token_id: torch.Tensor
    token_weight: torch.Tensor
    token_request: torch.Tensor
    kl_row: torch.Tensor
    kl_request: torch.Tensor
    kl_index: torch.Tensor  # position of each kept KL row in the full plan (for p_0)

    @classmethod
    def of(cls, plan: _Plan, groups_active: torch.Tensor) -> "_ActiveView":
        row_active = groups_active[plan.row_group]
        keep = row_active[plan.token_row]
        keep_kl = row_active[plan.kl_row] if len(plan.kl_row) else torch.zeros(0, dtype=torch.bool)
        return cls(
            groups_active=groups_active.clone(),
            token_row=plan.token_row[keep],
            token_col=plan.token_col[keep],
            token_id=plan.token_id[keep],
            token_weight=plan.token_weight[keep],
            token_request=plan.token_request[keep],
            kl_row=plan.kl_row[keep_kl],
            kl_request=plan.kl_request[keep_kl],
            kl_index=keep_kl.nonzero().squeeze(1),
        )


class _Buckets:
    """All rows, run in buckets of equal suffix length so the recomputed part has no padding.

    `run` returns the final hidden states of every active row, flattened to one
    [Σ rows × suffix length, d] table; `flat_index(rows, cols)` says where (row, col) sits in it.
    """

    def __init__(self, runner, adapter, layer: int, prefixes, suffixes):
        self.runner, self.adapter = runner, adapter
        by_length: dict[int, list[int]] = {}
        for row, suffix in enumerate(suffixes):
            by_length.setdefault(len(suffix), []).append(row)
        self.full = []
        for length in sorted(by_length):
            members = by_length[length]
            batch = SplitBatch.build([prefixes[r] for r in members], [suffixes[r] for r in members], pad_id=0)
            self.full.append((torch.tensor(members), capture_upper_state(runner, adapter, batch, layer)))
        self.width = self.full[0][1].block_inputs.shape[-1]
        self.select(torch.ones(len(suffixes), dtype=torch.bool))

    def select(self, row_active: torch.Tensor) -> None:
        """Keep only the active rows (their cached states are sliced once, not every step)."""
        self.current = []
        self.offset = torch.full((len(row_active),), -1, dtype=torch.long)
        start = 0
        for members, state in self.full:
            keep = row_active[members]
            if not keep.any():
                continue
            kept = members[keep]
            if not keep.all():
                state = state.select(keep.nonzero().squeeze(1))
            self.current.append((kept, state))
            length = state.batch.suffix_width
            self.offset[kept] = start + torch.arange(len(kept)) * length
            start += len(kept) * length

    def run(self, hooks_for: Callable[[torch.Tensor], contextlib.AbstractContextManager]) -> torch.Tensor:
        outputs = []
        for kept, state in self.current:
            with hooks_for(kept):
                outputs.append(run_upper(self.runner, self.adapter, state).reshape(-1, self.width))
        return torch.cat(outputs)

    def flat_index(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return self.offset[rows] + cols


def _token_terms(model, hidden: torch.Tensor, wanted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target token: NLL and whether the model's argmax already is the target."""
    logits = output_logits(model, hidden)
    nll = F.cross_entropy(logits, wanted, reduction="none")
    return nll, logits.detach().argmax(-1) == wanted


@contextlib.contextmanager
def _site_hooks(modules, vectors, cols: torch.Tensor, record: bool, recorded: list) -> Iterator[None]:
    """Add each site's per-row vector at suffix column `cols`; when `record`, append the sites'
    outputs as they were before the addition to `recorded` (a dict keyed "0", "1", … by site)."""
    rows = torch.arange(len(cols))
    with contextlib.ExitStack() as stack:
        if record:
            # Registered first, so it sees each output before the addition below changes it.
            recorded.append(stack.enter_context(capture({str(i): m for i, m in enumerate(modules)})))
        for module, vector in zip(modules, vectors):
            stack.enter_context(add_at_positions(module, vector, rows, cols))
        yield


def group_mean(per_request: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """[R, w] -> [G, w]: the mean over each group's requests (one key/value column per group)."""
    return torch.stack([per_request[list(members)].mean(dim=0) for members in groups])


def _check_finite(result: ValueResult, groups: Sequence[Sequence[int]]) -> None:
    for name in result.sites:
        bad = ~torch.isfinite(result.targets(name)).all(dim=1)
        if bad.any():
            members = groups[int(bad.nonzero()[0])]
            which = ", ".join(str(r) for r in members)
            raise EditError(
                f"The optimised value of request {which} is not finite; nothing was applied."
            )
