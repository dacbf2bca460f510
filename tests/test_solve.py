"""The closed-form updates against independent formulations (numpy least squares, explicit
inverses of well-conditioned matrices), plus orientation and finiteness helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editors.solve import (
    all_finite,
    alphaedit_delta,
    delta_for_weight,
    memit_delta,
    energy_null_space_projector,
    null_space_projector,
    spread_residual,
)

D, D_FF, BATCH = 4, 6, 3


def random_problem(seed: int, batch: int = BATCH):
    generator = torch.Generator().manual_seed(seed)
    residuals = torch.randn(D, batch, generator=generator, dtype=torch.float64)
    keys = torch.randn(D_FF, batch, generator=generator, dtype=torch.float64)
    samples = torch.randn(D_FF, 50, generator=generator, dtype=torch.float64)
    second_moment = samples @ samples.T / 50
    return residuals, keys, second_moment


def spectrum_covariance(eigenvalues: list[float], seed: int = 0):
    """A covariance with a chosen spectrum, and its eigenvectors (columns)."""
    generator = torch.Generator().manual_seed(seed)
    size = len(eigenvalues)
    gaussian = torch.randn(size, size, generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(gaussian)
    spectrum = torch.diag(torch.tensor(eigenvalues, dtype=torch.float64))
    return basis @ spectrum @ basis.T, basis


@pytest.mark.parametrize("lam", [0.5, 3.0, 100.0])
def test_memit_delta_is_the_regularised_least_squares_solution(lam):
    residuals, keys, second_moment = random_problem(seed=1)
    # min ‖ΔW K − R‖² + λ tr(ΔW C ΔWᵀ) is, row by row, the stacked problem
    # [Kᵀ; sqrt(λ) C^½] wᵀ ≈ [rᵀ; 0], solved here with numpy's lstsq.
    eigenvalues, eigenvectors = np.linalg.eigh(second_moment.numpy())
    root = eigenvectors @ np.diag(np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T
    design = np.vstack([keys.numpy().T, np.sqrt(lam) * root])
    target = np.vstack([residuals.numpy().T, np.zeros((D_FF, D))])
    expected = np.linalg.lstsq(design, target, rcond=None)[0].T

    delta = memit_delta(residuals, keys, second_moment, lam)

    assert delta.dtype == torch.float64
    assert delta.shape == (D, D_FF)
    np.testing.assert_allclose(delta.numpy(), expected, rtol=1e-9, atol=1e-10)


def test_memit_delta_accepts_float32_and_returns_float64():
    residuals, keys, second_moment = random_problem(seed=2)
    delta = memit_delta(residuals.float(), keys.float(), second_moment.float(), 2.0)
    assert delta.dtype == torch.float64
    expected = memit_delta(residuals, keys, second_moment, 2.0)
    torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)


def test_memit_delta_without_regulariser_maps_square_keys_exactly():
    residuals, keys, second_moment = random_problem(seed=3, batch=D_FF)
    delta = memit_delta(residuals, keys, second_moment, 0.0)
    torch.testing.assert_close(delta @ keys, residuals, rtol=1e-9, atol=1e-9)


def test_memit_delta_with_vanishing_regulariser_fits_few_keys():
    residuals, keys, second_moment = random_problem(seed=4, batch=2)
    delta = memit_delta(residuals, keys, second_moment, 1e-9)
    torch.testing.assert_close(delta @ keys, residuals, rtol=1e-6, atol=1e-6)


def test_memit_delta_refuses_a_singular_system_clearly():
    residuals, keys, second_moment = random_problem(seed=5, batch=2)
    with pytest.raises(ValueError, match="singular"):
        memit_delta(residuals, keys, second_moment, 0.0)


def test_memit_delta_rejects_mismatched_shapes():
    residuals, keys, second_moment = random_problem(seed=6)
    with pytest.raises(ValueError, match="batch size"):
        memit_delta(residuals[:, :2], keys, second_moment, 1.0)
    with pytest.raises(ValueError, match="second_moment must be"):
        memit_delta(residuals, keys, second_moment[:5, :5], 1.0)


def test_spread_residual_linear_and_sqrt():
    difference = torch.full((D, BATCH), 12.0)
    linear = spread_residual(difference, 4)
    square_root = spread_residual(difference, 4, rule="sqrt")
    assert linear.dtype == square_root.dtype == torch.float64
    torch.testing.assert_close(linear, torch.full_like(linear, 3.0))
    torch.testing.assert_close(square_root, torch.full_like(square_root, 6.0))
    # The last layer takes the whole remainder under either rule.
    torch.testing.assert_close(spread_residual(difference, 1, rule="sqrt"), difference.double())


@pytest.mark.parametrize("remaining, rule", [(0, "linear"), (3, "cube")])
def test_spread_residual_rejects_bad_arguments(remaining, rule):
    with pytest.raises(ValueError):
        spread_residual(torch.ones(D, BATCH), remaining, rule=rule)


def test_null_space_projector_is_an_orthogonal_projector_onto_small_directions():
    eigenvalues = [5.0, 2.0, 0.9, 1e-2, 1e-3, 0.0]
    covariance, basis = spectrum_covariance(eigenvalues)
    projector = null_space_projector(covariance, threshold=2e-2)

    torch.testing.assert_close(projector @ projector, projector, rtol=0, atol=1e-12)
    torch.testing.assert_close(projector, projector.T, rtol=0, atol=1e-12)
    assert round(float(torch.trace(projector))) == 3
    large, small = basis[:, :3], basis[:, 3:]
    torch.testing.assert_close(projector @ large, torch.zeros_like(large), rtol=0, atol=1e-12)
    torch.testing.assert_close(projector @ small, small, rtol=0, atol=1e-12)


@pytest.mark.parametrize("share, kept", [
    # Spectrum 40, 30, 20, 6, 3, 1 (trace 100), ascending cumulative shares 1%, 4%, 10%, 30%, ...
    (0.0099, 0), (0.01, 1), (0.039, 1), (0.04, 2), (0.0999, 2), (0.10, 3), (0.2999, 3), (1.0, 6),
])
def test_energy_projector_keeps_the_smallest_directions_within_the_share(share, kept):
    eigenvalues = [40.0, 30.0, 20.0, 6.0, 3.0, 1.0]
    covariance, basis = spectrum_covariance(eigenvalues, seed=3)
    projector = energy_null_space_projector(covariance, share)

    torch.testing.assert_close(projector @ projector, projector, rtol=0, atol=1e-10)
    assert round(float(torch.trace(projector))) == kept
    # Exactly the `kept` smallest directions: the columns of `basis` from the end.
    inside, outside = basis[:, len(eigenvalues) - kept:], basis[:, : len(eigenvalues) - kept]
    torch.testing.assert_close(projector @ inside, inside, rtol=0, atol=1e-10)
    torch.testing.assert_close(projector @ outside, torch.zeros_like(outside), rtol=0, atol=1e-10)
    # The energy the kept subspace holds is the sum of its eigenvalues, within the share.
    energy = float(torch.trace(projector @ covariance) / torch.trace(covariance))
    assert energy == pytest.approx(sum(sorted(eigenvalues)[:kept]) / 100.0, abs=1e-10)
    assert energy <= share + 1e-12


def test_energy_projector_does_not_depend_on_the_scale_of_the_keys():
    covariance, _ = spectrum_covariance([40.0, 30.0, 20.0, 6.0, 3.0, 1.0], seed=4)
    torch.testing.assert_close(energy_null_space_projector(covariance, 0.05),
                               energy_null_space_projector(1e-4 * covariance, 0.05), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="energy_share"):
        energy_null_space_projector(covariance, 0.0)


def test_alphaedit_delta_leaves_preserved_directions_untouched():
    covariance, basis = spectrum_covariance([5.0, 2.0, 0.9, 1e-2, 1e-3, 0.0], seed=7)
    projector = null_space_projector(covariance)
    residuals, keys, _ = random_problem(seed=8)
    generator = torch.Generator().manual_seed(9)
    previous_keys = torch.randn(D_FF, 4, generator=generator, dtype=torch.float64)
    previous_KKt = previous_keys @ previous_keys.T

    delta = alphaedit_delta(residuals, keys, projector, previous_KKt, alpha=10.0)

    assert delta.shape == (D, D_FF) and delta.dtype == torch.float64
    preserved = basis[:, :3]  # the directions C's large eigenvalues say real keys use
    moved = delta @ preserved
    torch.testing.assert_close(moved, torch.zeros_like(moved), rtol=0, atol=1e-12)
    assert delta.abs().max() > 1e-3  # and the edit itself is not trivially zero

    # The paper's form: ΔW = R Kᵀ P ((K Kᵀ + C_prev) P + αI)⁻¹, written with an explicit inverse.
    gram = keys @ keys.T + previous_KKt
    identity = torch.eye(D_FF, dtype=torch.float64)
    paper = residuals @ keys.T @ projector @ torch.linalg.inv(gram @ projector + 10.0 * identity)
    torch.testing.assert_close(delta, paper, rtol=1e-9, atol=1e-12)


def test_alphaedit_delta_without_history_equals_empty_history():
    covariance, _ = spectrum_covariance([5.0, 2.0, 0.9, 1e-2, 1e-3, 0.0], seed=10)
    projector = null_space_projector(covariance)
    residuals, keys, _ = random_problem(seed=11)
    torch.testing.assert_close(
        alphaedit_delta(residuals, keys, projector),
        alphaedit_delta(residuals, keys, projector, torch.zeros(D_FF, D_FF, dtype=torch.float64)),
    )


def test_delta_for_weight_orientations():
    delta = torch.arange(D * D_FF, dtype=torch.float64).reshape(D, D_FF)
    assert delta_for_weight(delta, (D, D_FF)) is delta
    conv1d = torch.nn.Parameter(torch.zeros(D_FF, D))  # GPT-2 Conv1D layout
    torch.testing.assert_close(delta_for_weight(delta, conv1d.shape), delta.T)
    torch.testing.assert_close(delta_for_weight(delta, (D_FF, D), transposed=True), delta.T)


def test_delta_for_weight_rejects_mismatches_and_ambiguity():
    delta = torch.zeros(D, D_FF)
    with pytest.raises(ValueError, match="fits neither"):
        delta_for_weight(delta, (D, D))
    with pytest.raises(ValueError, match="transposed"):
        delta_for_weight(delta, (D, D_FF), transposed=True)
    with pytest.raises(ValueError, match="cannot be inferred"):
        delta_for_weight(torch.zeros(D, D), (D, D))
    assert delta_for_weight(torch.eye(D), (D, D), transposed=False).shape == (D, D)


def test_all_finite_reports_the_first_bad_tensor():
    good = torch.ones(3)
    assert all_finite([good, good]) == (True, None)
    nan, inf = torch.tensor([1.0, float("nan")]), torch.tensor([float("inf")])
    assert all_finite([good, nan, inf]) == (False, 1)
    assert all_finite([good, inf]) == (False, 1)
    assert all_finite([]) == (True, None)
