"""Spreading value targets over the edited layers (MEMIT §3; PMET and AlphaEdit reuse it).

For the edited layers in ascending order: read the keys K_l and the current output at l* from
the partially edited model, take the layer's share of the remaining residual, solve for ΔW_l,
and apply it (temporarily) before the next layer. The model is restored exactly on exit; the
caller applies the returned deltas only once every one of them is known to be finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from editors.applied import trial_deltas
from editors.keys import KeySite, LayerwiseKeys
from editors.protocol import EditError
from editors.solve import SpreadRule, delta_for_weight, spread_residual
from editors.values import group_mean
from lm.adapters import adapter_for
from lm.progress import StageProgress

# (layer, residuals R [d, G], keys K [d_ff, G]) -> ΔW [d, d_ff] float64
Solver = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SpreadResult:
    deltas: dict[str, torch.Tensor]  # parameter name -> ΔW in the weight's orientation and dtype
    keys: dict[int, torch.Tensor]  # layer -> [G, d_ff] keys the update was solved for
    residual_norms: dict[int, float]  # layer -> mean ‖z − h‖ over groups before that layer


def spread_over_layers(
    model,
    sites: Sequence[Sequence[KeySite]],
    groups: Sequence[Sequence[int]],
    layers: Sequence[int],
    output_module: str,
    targets: torch.Tensor,
    solve: Solver,
    rule: SpreadRule = "linear",
    progress: StageProgress | None = None,
) -> SpreadResult:
    """Deltas for the MLP output projection of every layer in `layers` (see module docstring).

    `targets` [G, d] are the wanted outputs of `output_module` (at l*, the last layer) at each
    group's bare-prompt key tokens.
    """
    adapter = adapter_for(model)
    deltas: dict[str, torch.Tensor] = {}
    used_keys: dict[int, torch.Tensor] = {}
    residual_norms: dict[int, float] = {}
    reader = LayerwiseKeys(model, sites, output_module, layers[-1])
    with trial_deltas(model) as add:
        for i, layer in enumerate(layers):
            keys, current = reader.read(layer)
            _refuse_non_finite(keys, layer, "key")
            _refuse_non_finite(current, layer, "current output")
            K = group_mean(keys, groups)
            gap = targets - group_mean(current, groups)
            residual_norms[layer] = float(gap.norm(dim=1).mean())
            residuals = spread_residual(gap.T, len(layers) - i, rule)
            delta = solve(layer, residuals, K.T)
            if not bool(torch.isfinite(delta).all()):
                raise EditError(
                    f"The update for layer {layer} (requests 0-{len(sites) - 1} of this batch) is not "
                    "finite; nothing was applied."
                )
            weight = adapter.mlp_out_weight(model, layer)
            name = f"{adapter.mlp_out_name(layer)}.weight"
            cast = delta_for_weight(delta, weight.shape, adapter.mlp_out_transposed).to(weight.dtype)
            add(name, cast)
            deltas[name] = cast.contiguous()
            used_keys[layer] = K
            if progress:
                progress("layers", i + 1, len(layers))
    return SpreadResult(deltas, used_keys, residual_norms)


def _refuse_non_finite(rows: torch.Tensor, layer: int, what: str) -> None:
    bad = ~torch.isfinite(rows).all(dim=1)
    if bad.any():
        raise EditError(
            f"Request {int(bad.nonzero()[0])}: its {what} at layer {layer} is not finite; nothing was applied."
        )
