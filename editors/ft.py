"""FT-L (constrained fine-tuning of Zhu et al. 2020, "Modifying Memories in Transformer Models", as
the ROME/MEMIT papers' baseline): fine-tune one layer's MLP output projection under an L∞ bound.

The baseline of the ROME/MEMIT papers, kept to show that the same-subject collapse is specific
to key–value editors. Adam on the teacher-forced NLL of every request's target after its prompt
(mean over target tokens, then over requests); after each step the weight is clamped to within
`norm_constraint` of its original value, entry by entry. Training runs on a private copy of the
model in `dtype` (only blocks from the edited layer up are computed, from cached inputs) with
the weight change as a float32 tensor of its own; the change is then applied through the same
checked, undoable path as the other editors, so the model itself is never touched mid-way.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from editors.applied import WeightEdit
from editors.hparams import FtHparams
from editors.keys import target_ids
from data.requests import EditRequest, validate_requests
from editors.protocol import EditError
from editors.upper import SplitBatch, block_input_state, run_upper
from editors.values import forward_copy
from lm.adapters import adapter_for
from lm.progress import StageProgress
from lm.scoring import output_logits



class FtEditor:
    name = "ft_l"

    def __init__(self, hparams: FtHparams, progress: StageProgress | None = None):
        self.hparams = hparams
        self.progress = progress

    def prepare(self, model, tok) -> None:
        """Nothing: FT-L reads no cached statistics."""

    def apply(self, model, tok, requests: Sequence[EditRequest]) -> WeightEdit:
        started = time.perf_counter()
        validate_requests(requests)
        adapter = adapter_for(model)
        hp = self.hparams
        hp.check_fits(adapter.num_layers(model))
        targets = target_ids(tok, requests)
        prompts = [list(tok(request.prompt)["input_ids"]) for request in requests]
        rows, cols, wanted, weights = [], [], [], []
        for row, (prompt, target) in enumerate(zip(prompts, targets)):
            for j, token in enumerate(target):
                rows.append(row)
                cols.append(len(prompt) - 1 + j)
                wanted.append(token)
                weights.append(1.0 / (len(target) * len(requests)))
        # No prefix: a weight change at the layer reaches every position.
        batch = SplitBatch.build([[] for _ in prompts], [p + list(t[:-1]) for p, t in zip(prompts, targets)], 0)
        # The forward/backward runs on a private copy in `hp.dtype` (bf16 is ~2× faster on
        # CPU); the change itself is a separate float32 tensor added through a hook, so steps
        # far below bf16's resolution of the weight (the L∞ bound is 5e-4) are not rounded away.
        runner = forward_copy(model, hp.dtype)
        state = block_input_state(runner, adapter, batch, hp.layer)
        rows_t, cols_t, wanted_t = (torch.tensor(v, dtype=torch.long) for v in (rows, cols, wanted))
        weights_t = torch.tensor(weights)

        name = f"{adapter.mlp_out_name(hp.layer)}.weight"
        weight = adapter.mlp_out_weight(model, hp.layer)
        # Adam on a change that starts at zero, clamped to ±bound, takes exactly the steps Adam
        # on the weight clamped to original ± bound would take.
        delta = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=hp.lr)
        losses = []
        module = runner.get_submodule(adapter.mlp_out_name(hp.layer))
        with _adding_change(module, delta, adapter.mlp_out_transposed):
            for step in range(hp.steps):
                hidden = run_upper(runner, adapter, state)
                nll = F.cross_entropy(output_logits(runner, hidden[rows_t, cols_t]), wanted_t, reduction="none")
                loss = (nll * weights_t).sum()
                losses.append(loss.item())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    delta.clamp_(-hp.norm_constraint, hp.norm_constraint)
                if self.progress:
                    self.progress("fine-tune", step + 1, hp.steps)
        delta = delta.detach().to(weight.dtype)
        if not bool(torch.isfinite(delta).all()):
            raise EditError(
                f"The FT-L update of layer {hp.layer} (requests 0-{len(requests) - 1}) is not finite; "
                "nothing was applied."
            )
        info = {
            "editor": self.name,
            "hparams": hp.to_dict(),
            "requests": len(requests),
            "losses": losses,
            "seconds": {"total": time.perf_counter() - started},
        }
        return WeightEdit.apply(model, tok, {name: delta}, info)


@contextlib.contextmanager
def _adding_change(module: torch.nn.Module, delta: torch.Tensor, transposed: bool) -> Iterator[None]:
    """While open, `module` (the MLP output projection) computes x·(W + Δ) in the orientation
    of its stored weight: Linear stores [d, d_ff] (x Δᵀ), GPT-2's Conv1D [d_ff, d] (x Δ)."""
    def add(_module, args, output):
        change = args[0].float() @ (delta if transposed else delta.T)
        return output + change.to(output.dtype)

    handle = module.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
