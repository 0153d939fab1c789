"""Progress in batch logs: without a terminal the loop prints a plain line every N steps (step,
loss, tokens/s, ETA); on a terminal a bar; `off` prints nothing."""

from __future__ import annotations

import re

import torch
from helpers import EOS, groups, tiny_gpt_neo

from unlearnbench.config import TrainConfig
from unlearnbench.progress import StepProgress, log_every
from unlearnbench.training import Objective, train

LINE = re.compile(
    r"^demo: step (\d+)/6 \(\d+%\) loss \d+\.\d{3} \| [\d,]+ tokens/s \| elapsed \d+:\d\d"
    r"( \| ETA \d+:\d\d)?$"
)


def _train(progress=True):
    cfg = TrainConfig(steps=6, batch_size=4, micro_batch_size=2, lr=1e-3, warmup_steps=1)
    torch.manual_seed(0)
    return train(
        Objective(tiny_gpt_neo()), groups(), cfg, 0, EOS, progress=progress, description="demo"
    )


def test_plain_lines_every_n_steps_without_a_terminal(monkeypatch, capsys):
    monkeypatch.setenv("UNLEARNBENCH_PROGRESS", "lines")
    monkeypatch.setenv("UNLEARNBENCH_LOG_EVERY", "2")
    result = _train()
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("demo:")]
    assert [int(LINE.match(x).group(1)) for x in lines] == [2, 4, 6], lines
    assert "ETA" in lines[0] and "ETA" not in lines[-1]  # nothing left at the last step
    loss_at_4 = float(lines[1].split("loss ")[1].split()[0])
    assert abs(loss_at_4 - result.history[3]["loss"]) < 5e-4


def test_no_terminal_means_lines_and_off_means_silence(monkeypatch, capsys):
    monkeypatch.delenv("UNLEARNBENCH_PROGRESS", raising=False)
    monkeypatch.delenv("UNLEARNBENCH_LOG_EVERY", raising=False)
    _train()  # pytest's captured stderr is not a terminal
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("demo:")]
    assert len(lines) == 6 and all(LINE.match(x) for x in lines)  # 6 steps < 20 lines: each
    monkeypatch.setenv("UNLEARNBENCH_PROGRESS", "off")
    _train()
    assert "demo:" not in capsys.readouterr().err


def test_default_interval_is_a_twentieth_and_eta_counts_from_a_resume(monkeypatch):
    monkeypatch.delenv("UNLEARNBENCH_LOG_EVERY", raising=False)
    assert log_every(200) == 10 and log_every(7) == 1 and log_every(1000) == 50
    bar = StepProgress("demo", 100, first=50, enabled=True)
    bar.mode = "lines"
    with bar:
        bar._start -= 10.0  # 10 s for the 10 steps since the resume at step 50
        line = bar.line(60, 2.0, 5000)
    assert "step 60/100 (60%)" in line and "ETA 0:40" in line and "500 tokens/s" in line
