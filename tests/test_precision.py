"""The bf16 defaults follow the CPU: bf16 only where it multiplies bf16 natively."""

from pathlib import Path

import pytest
import torch

from covariance.collect import CollectOptions
from editors.covariances import CorpusCovariance
from editors.hparams import load_hparams
from lm.precision import bf16_is_fast, wants_bf16
from retrieval.training import TrainingConfig


def test_bf16_is_never_chosen_on_a_cpu_without_amx_or_avx512_bf16():
    # The other direction also needs the OS to enable AMX, which only torch's probe can tell.
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("needs /proc/cpuinfo")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
    if not flags & {"amx_tile", "avx512_bf16"}:
        assert bf16_is_fast("cpu") is False
    else:
        assert bf16_is_fast("cpu") == (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def test_explicit_choices_win_and_auto_asks_the_cpu():
    assert wants_bf16("bf16") is True and wants_bf16("fp32") is False
    assert wants_bf16("auto") == bf16_is_fast("cpu")
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        wants_bf16("fp16")


@pytest.mark.parametrize("fast", [True, False])
def test_the_defaults_that_choose_bf16_for_speed_follow_the_cpu(monkeypatch, fast):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: fast)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: fast)
    assert bf16_is_fast("cpu") is fast
    assert TrainingConfig(steps=1).llm_bf16 is fast
    assert CollectOptions().bf16 is fast
    assert CorpusCovariance().bf16 is fast


@pytest.mark.parametrize("fast", [True, False])
def test_auto_compute_dtypes_of_the_shipped_tables_resolve_before_anything_sees_them(monkeypatch, fast):
    monkeypatch.setattr("editors.hparams.bf16_is_fast", lambda: fast)
    expected = "bfloat16" if fast else "float32"
    for editor in ("memit", "pmet", "memit_merge", "alphaedit"):
        hparams = load_hparams(editor, "llama")
        assert hparams.v_dtype == hparams.to_dict()["v_dtype"] == expected
    assert load_hparams("ft_l", "llama").dtype == expected
    assert load_hparams("memit", "llama", {"v_dtype": "float32"}).v_dtype == "float32"  # explicit wins


@pytest.mark.parametrize("fast", [True, False])
def test_a_written_hyper_parameter_file_keeps_auto_where_the_table_said_auto(monkeypatch, fast):
    monkeypatch.setattr("editors.hparams.bf16_is_fast", lambda: fast)
    assert load_hparams("memit", "llama").file_values()["v_dtype"] == "auto"
    assert load_hparams("ft_l", "llama").file_values()["dtype"] == "auto"
    explicit = load_hparams("memit", "llama", {"v_dtype": "bfloat16"})
    assert explicit.file_values()["v_dtype"] == "bfloat16"
    assert explicit.file_values() == explicit.to_dict()
