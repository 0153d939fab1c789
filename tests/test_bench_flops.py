"""The throughput benchmark's FLOP count matches the matmul weights of the model it builds."""

import importlib.util
from pathlib import Path

import pytest
from torch import nn

from unlearnbench.models.build import build_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_throughput.py"


def test_model_flops_count_every_matmul_weight_and_the_unembedding():
    spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = build_model("tiny", 2048, 0, 0)
    blocks = sum(
        m.weight.numel() for m in model.transformer.h.modules() if isinstance(m, nn.Linear)
    )
    n = blocks + model.lm_head.weight.numel()
    L, d, T = 4, 128, 256
    assert bench.model_flops_per_token("tiny", 2048, T, "train") == 6 * n + 12 * L * d * T
    assert bench.model_flops_per_token("tiny", 2048, T, "eval") * 3 == 6 * n + 12 * L * d * T
    assert (
        bench.peak_tflops("cpu", False, 0.0) is None and bench.peak_tflops("cpu", False, 2.0) == 2.0
    )


def test_paired_ratio_cancels_drift_between_rounds_and_reports_its_interval():
    spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # the machine slows 4x over the rounds; the method is always twice as fast: exactly 2x
    ratio, low, high = mod.paired_ratio([1.0, 2.0, 4.0], [0.5, 1.0, 2.0])
    assert ratio == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)
    # noisy rounds: the interval holds the geometric mean and widens with the noise
    r1 = mod.paired_ratio([1.0] * 6, [0.5, 0.52, 0.48, 0.51, 0.49, 0.5])
    r2 = mod.paired_ratio([1.0] * 6, [0.5, 0.6, 0.4, 0.55, 0.45, 0.5])
    assert r1[1] < r1[0] < r1[2] and (r2[2] - r2[1]) > (r1[2] - r1[1])
