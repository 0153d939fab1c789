"""The throughput benchmark's FLOP count matches the matmul weights of the model it builds."""

import importlib.util
from pathlib import Path

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
