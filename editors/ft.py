"""FT-L (ALGORITHMS.md §7): fine-tune one layer's MLP output projection under an L∞ bound.

The baseline of the ROME/MEMIT papers, kept to show that the same-subject collapse is specific
to key–value editors. Adam on the teacher-forced NLL of every request's target after its prompt
(mean over target tokens, then over requests); after each step the weight is clamped to within
`norm_constraint` of its original value, entry by entry. Training runs on the model's own weight
(only blocks from the edited layer up are computed, from cached inputs), then the original is
restored exactly and the difference is applied through the same checked, undoable path as the
other editors.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from editors.applied import WeightEdit
from editors.hparams import FtHparams
from editors.keys import target_ids
from editors.protocol import EditError, EditRequest, validate_requests
from editors.upper import SplitBatch, block_input_state, run_upper
from editors.values import lm_logits
from lm.adapters import adapter_for

Progress = Callable[[str, int, int], None]


class FtEditor:
    name = "ft_l"

    def __init__(self, hparams: FtHparams, progress: Progress | None = None):
        self.hparams = hparams
        self.progress = progress

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
        state = block_input_state(model, adapter, batch, hp.layer)
        rows_t, cols_t, wanted_t = (torch.tensor(v, dtype=torch.long) for v in (rows, cols, wanted))
        weights_t = torch.tensor(weights)

        name = f"{adapter.mlp_out_name(hp.layer)}.weight"
        weight = adapter.mlp_out_weight(model, hp.layer)
        original = weight.detach().clone()
        losses = []
        try:
            weight.requires_grad_(True)
            optimiser = torch.optim.Adam([weight], lr=hp.lr)
            for step in range(hp.steps):
                hidden = run_upper(model, adapter, state)
                nll = F.cross_entropy(lm_logits(model, hidden[rows_t, cols_t]), wanted_t, reduction="none")
                loss = (nll * weights_t).sum()
                losses.append(loss.item())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    weight.copy_(torch.clamp(weight, original - hp.norm_constraint, original + hp.norm_constraint))
                if self.progress:
                    self.progress("fine-tune", step + 1, hp.steps)
            delta = (weight.detach() - original).clone()
        finally:
            weight.requires_grad_(False)
            with torch.no_grad():
                weight.copy_(original)
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
