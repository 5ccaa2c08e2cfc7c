"""bf16 autocast defaults to on only where bf16 is native (it is ~3x slower emulated on CPU)."""

from __future__ import annotations

import pytest
import torch

from jobs.cli import build_parser
from jobs.train import train_config
from pipeline.model.precision import bf16_native, resolve_amp


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    pytest.skip("no /proc/cpuinfo")


def test_cpu_bf16_native_matches_the_cpu_flags():
    flags = _cpu_flags()
    assert bf16_native("cpu") == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize(
    "given, want", [(True, True), (False, False), ("on", True), ("off", False)]
)
def test_explicit_choice_wins(given, want):
    assert resolve_amp(given, "cpu") is want


@pytest.mark.parametrize("given", [None, "auto"])
def test_auto_follows_the_hardware(given):
    assert resolve_amp(given, "cpu") is bf16_native("cpu")
    assert resolve_amp(given, "meta") is False


def _cfg(*flags):
    parser, _ = build_parser()
    args = parser.parse_args(["train", "--dataset", "synthetic-aurora", "--out", "x", *flags])
    return train_config(args, log_every=0).resolved(n_train=100)


def test_train_cli_amp_flags():
    assert _cfg().amp is bf16_native("cpu")
    assert _cfg("--amp", "on").amp is True
    assert _cfg("--amp", "off").amp is False
    assert _cfg("--no-amp").amp is False  # the old spelling still works
    with pytest.raises(SystemExit):
        _cfg("--amp", "maybe")


def test_resolved_config_records_what_ran():
    """The checkpoint's train config holds a bool, not "auto": what the weights were made with."""
    cfg = _cfg()
    assert isinstance(cfg.amp, bool)
    assert cfg.resolved().amp is cfg.amp  # resolving twice changes nothing
    if not bf16_native("cpu"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp):
            assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
