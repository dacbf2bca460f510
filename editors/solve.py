"""Closed-form linear algebra of the key–value editors (MEMIT, PMET, MEMIT-Merge, AlphaEdit).

Tensors in, float64 deltas out: no model, no hooks, no caching. Every system is solved with
`torch.linalg.solve` (or `eigh` for the projector) in float64, never through an explicit inverse,
because the key Gram matrices of real models are badly conditioned and fp16/fp32 solves are a
known failure of the reference code. Callers cast the result to the weight's dtype and put it in
the weight's orientation with `delta_for_weight`.

Shapes: residuals R are [d, B] (residual width × batch), keys K are [d_ff, B], the key second
moment C is [d_ff, d_ff]; every delta is returned as [d, d_ff] (nn.Linear orientation).
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
from torch import Tensor

SpreadRule = Literal["linear", "sqrt"]


def memit_delta(residuals: Tensor, keys: Tensor, second_moment: Tensor, lam: float) -> Tensor:
    """ΔW = R Kᵀ (λC + K Kᵀ)⁻¹, the minimiser of ‖ΔW K − R‖² + λ tr(ΔW C ΔWᵀ).

    `lam` is MEMIT's `mom2_update_weight`; C is the normalised second moment E[k kᵀ] (S / n).
    """
    R, K, C = _float64(residuals), _float64(keys), _float64(second_moment)
    _check_keys_and_residuals(R, K)
    _check_square(C, "second_moment", K.shape[0])
    if lam < 0:
        raise ValueError(f"lam must be non-negative, got {lam}.")
    if lam == 0 and K.shape[1] < K.shape[0]:
        # K Kᵀ then has rank ≤ B < d_ff; LU would return a huge, meaningless finite delta
        # instead of failing, so refuse before solving.
        raise ValueError(
            f"The system K Kᵀ is singular with lam = 0 and {K.shape[1]} keys of width "
            f"{K.shape[0]}; use a positive lam."
        )
    system = lam * C + K @ K.T
    # The system is symmetric, so ΔW = R Kᵀ A⁻¹ is the transpose of A⁻¹ K Rᵀ: one solve with
    # d right-hand sides instead of forming A⁻¹.
    return _solve(system, K @ R.T, "λC + K Kᵀ").T.contiguous()


def spread_residual(
    target_minus_current: Tensor, layers_remaining: int, rule: SpreadRule = "linear"
) -> Tensor:
    """The share of the remaining residual that the current layer should absorb.

    With `layers_remaining = |L| − i`, MEMIT divides by it ("linear") so the remaining layers
    split the work evenly; PMET divides by its square root ("sqrt"), front-loading the edit.
    """
    if isinstance(layers_remaining, bool) or not isinstance(layers_remaining, int):
        raise TypeError(f"layers_remaining must be an int, got {type(layers_remaining).__name__}.")
    if layers_remaining < 1:
        raise ValueError(f"layers_remaining must be at least 1, got {layers_remaining}.")
    if rule == "linear":
        divisor = float(layers_remaining)
    elif rule == "sqrt":
        divisor = float(layers_remaining) ** 0.5
    else:
        raise ValueError(f"rule must be 'linear' or 'sqrt', got {rule!r}.")
    return _float64(target_minus_current) / divisor


def null_space_projector(second_moment: Tensor, threshold: float = 2e-2) -> Tensor:
    """P = U Uᵀ over the eigenvectors of C whose eigenvalue is below `threshold` (the AlphaEdit
    reference's absolute rule, τ = 2e-2 on Llama-3-8B's statistics).

    Directions the preserved keys hardly use span the (approximate) null space; an update
    confined to it leaves the outputs of those keys unchanged. P is a pure function of
    (C, threshold), so it can be cached beside the covariance file under the same key plus the
    threshold. `eigh` replaces the reference's SVD: for a symmetric PSD matrix the singular
    values are the eigenvalues, and `eigh` guarantees orthonormal real eigenvectors.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}.")
    eigenvalues, eigenvectors = _ascending_eigen(second_moment)
    null_directions = eigenvectors[:, eigenvalues < threshold]
    return null_directions @ null_directions.T


def energy_null_space_projector(second_moment: Tensor, energy_share: float = 0.01) -> Tensor:
    """P = U Uᵀ over the largest set of smallest-eigenvalue directions of C whose eigenvalues
    sum to at most `energy_share` × trace(C).

    trace(P C) / trace(C) is the share of the preserved keys' energy E‖k‖² that lies inside the
    kept subspace, so it bounds how much an update confined to it can move their outputs
    relative to its norm. Unlike an absolute eigenvalue threshold, the rule does not depend on
    the scale of the model's keys. Eigenvalues that rounding made slightly negative count as 0.
    """
    if not 0 < energy_share <= 1:
        raise ValueError(f"energy_share must be in (0, 1], got {energy_share}.")
    eigenvalues, eigenvectors = _ascending_eigen(second_moment)
    energy = eigenvalues.clamp_min(0)
    cumulative = energy.cumsum(0)
    kept = int((cumulative <= energy_share * energy.sum()).sum())  # cumulative is non-decreasing
    null_directions = eigenvectors[:, :kept]
    return null_directions @ null_directions.T


def _ascending_eigen(second_moment: Tensor) -> tuple[Tensor, Tensor]:
    C = _float64(second_moment)
    _check_square(C, "second_moment")
    # Symmetrise so accumulated rounding in the stored sums cannot make eigh see an asymmetric
    # input (eigh reads only one triangle, which would silently bias the result).
    return torch.linalg.eigh((C + C.T) / 2)


def alphaedit_delta(
    residuals: Tensor,
    keys: Tensor,
    projector: Tensor,
    previous_KKt: Tensor | None = None,
    alpha: float = 10.0,
) -> Tensor:
    """AlphaEdit's update: Δ = solve(P (K Kᵀ + C_prev) + αI, P K Rᵀ), returned as ΔW = Δᵀ.

    `previous_KKt` is the sum of K Kᵀ over batches already applied to this model (None for the
    first batch); the caller owns that memory and adds this batch's K Kᵀ after applying it.
    ΔW annihilates every vector outside the range of P, so preserved keys keep their outputs.
    """
    R, K, P = _float64(residuals), _float64(keys), _float64(projector)
    _check_keys_and_residuals(R, K)
    d_ff = K.shape[0]
    _check_square(P, "projector", d_ff)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}.")
    gram = K @ K.T
    if previous_KKt is not None:
        previous = _float64(previous_KKt)
        _check_square(previous, "previous_KKt", d_ff)
        gram = gram + previous
    identity = torch.eye(d_ff, dtype=torch.float64, device=K.device)
    system = P @ gram + alpha * identity
    return _solve(system, P @ K @ R.T, "P (K Kᵀ + C_prev) + αI").T.contiguous()


def delta_for_weight(
    delta: Tensor, weight_shape: tuple[int, ...] | torch.Size, transposed: bool | None = None
) -> Tensor:
    """Return ΔW [d, d_ff] in the weight's own orientation.

    nn.Linear stores [d, d_ff]; GPT-2's Conv1D stores [d_ff, d]. The architecture adapter knows
    which it is and should pass `transposed`; without it the orientation is inferred from the
    shapes, which is impossible for a square weight (d == d_ff) and refused.
    """
    if delta.dim() != 2:
        raise ValueError(f"delta must be a 2-D [d, d_ff] matrix, got shape {tuple(delta.shape)}.")
    as_linear = tuple(delta.shape)
    as_conv1d = as_linear[::-1]
    shape = tuple(weight_shape)
    if transposed is None:
        orientations = ((False, as_linear), (True, as_conv1d))
        fits = [flag for flag, candidate in orientations if shape == candidate]
        if len(fits) == 2:
            raise ValueError(
                f"The weight is square {shape}, so its orientation cannot be inferred; "
                "pass transposed= from the architecture adapter."
            )
        if not fits:
            raise ValueError(
                f"Delta of shape {as_linear} fits neither an nn.Linear weight {as_linear} nor a "
                f"transposed (Conv1D) weight {as_conv1d}; the weight has shape {shape}."
            )
        transposed = fits[0]
    expected = as_conv1d if transposed else as_linear
    if shape != expected:
        kind = "transposed (Conv1D)" if transposed else "nn.Linear"
        raise ValueError(
            f"Delta of shape {as_linear} needs a {kind} weight of shape {expected}, "
            f"but the weight has shape {shape}."
        )
    return delta.T if transposed else delta


def all_finite(tensors: Iterable[Tensor]) -> tuple[bool, int | None]:
    """(True, None) when every tensor is free of NaN/inf, else (False, index of the first bad one).

    Editors call this on all deltas before touching the model, so a non-finite update is
    refused with the model unchanged.
    """
    for index, tensor in enumerate(tensors):
        if not bool(torch.isfinite(tensor).all()):
            return False, index
    return True, None


def _float64(tensor: Tensor) -> Tensor:
    return tensor.detach().to(torch.float64)


def _check_keys_and_residuals(residuals: Tensor, keys: Tensor) -> None:
    if residuals.dim() != 2 or keys.dim() != 2:
        raise ValueError(
            f"residuals [d, B] and keys [d_ff, B] must be 2-D, got shapes "
            f"{tuple(residuals.shape)} and {tuple(keys.shape)}."
        )
    if residuals.shape[1] != keys.shape[1]:
        raise ValueError(
            f"residuals {tuple(residuals.shape)} and keys {tuple(keys.shape)} disagree on the "
            "batch size (second dimension)."
        )


def _check_square(matrix: Tensor, name: str, size: int | None = None) -> None:
    square = matrix.dim() == 2 and matrix.shape[0] == matrix.shape[1]
    if not square or (size is not None and matrix.shape[0] != size):
        expected = "square" if size is None else f"[{size}, {size}]"
        raise ValueError(f"{name} must be {expected}, got shape {tuple(matrix.shape)}.")


def _solve(system: Tensor, rhs: Tensor, description: str) -> Tensor:
    try:
        return torch.linalg.solve(system, rhs)
    except torch.linalg.LinAlgError as error:
        raise ValueError(
            f"The system {description} is singular; with too few independent keys use a "
            "positive regulariser (λ or α)."
        ) from error
