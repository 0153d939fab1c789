"""Data parallelism: 2 CPU processes (gloo) end with the parameters of 1 process on the same global
batch, for `no-filter`, `sgtm` (shared and strict optimizer), `gradient-routing` and
`activation-masking` (each in its default one-pass step; sgtm also against the per-label passes of
one process), with ranks holding blocks of different labels. Tolerance: atol 1e-5, rtol 1e-5 on the parameters after 4 AdamW steps at lr 1e-2,
i.e. 1/1000 of one step's size: the gradients differ only by float32 rounding of the summation
order (measured: at most 2e-6 after Adam's normalization); elements that strict mode freezes must
match bit for bit."""

import dataclasses
import multiprocessing as mp

import pytest
import torch
from helpers import EOS, groups, tiny_gpt_neo

from unlearnbench.config import TrainConfig
from unlearnbench.distributed import shard
from unlearnbench.methods import RunContext
from unlearnbench.methods.activation_masking import ActivationMaskingOptions
from unlearnbench.methods.activation_masking import setup as am_setup
from unlearnbench.methods.gradient_routing import GradientRoutingOptions
from unlearnbench.methods.gradient_routing import setup as gr_setup
from unlearnbench.methods.sgtm import SGTMOptions
from unlearnbench.methods.sgtm import setup as sgtm_setup
from unlearnbench.models.partition import Partition, forget_masks
from unlearnbench.training import Objective, train

# batch 3 over three labels: ranks get 2 and 1 rows, often of different labels
CFG = TrainConfig(steps=4, batch_size=3, micro_batch_size=1, lr=1e-2, warmup_steps=1)


def _objective(method: str, model, one_pass: bool = True):
    if method == "no-filter":
        return Objective(model=model)
    ctx = RunContext(config=None, benchmark=None, model=model)
    part = dict(forget_mlp_dim=16, forget_heads=1, one_pass=one_pass)
    if method == "gradient-routing":
        return gr_setup(ctx, GradientRoutingOptions(**part))
    if method == "activation-masking":
        return am_setup(ctx, ActivationMaskingOptions(**part))
    optimizer = "strict" if method == "sgtm-strict" else "shared"
    return sgtm_setup(ctx, SGTMOptions(**part, optimizer=optimizer))


def _train(method: str, one_pass: bool = True) -> tuple[dict, list]:
    model = tiny_gpt_neo()
    data = groups(n_forget=4, n_retain=4, n_unlabeled=4)
    res = train(_objective(method, model, one_pass), data, CFG, 0, EOS, progress=False)
    return {n: p.detach().clone() for n, p in model.named_parameters()}, res


METHODS = ["no-filter", "sgtm", "sgtm-strict", "gradient-routing", "activation-masking"]


def _worker(rank: int, world: int, init: str, out: str, seen: dict) -> None:
    import torch.distributed as dist

    import unlearnbench.training as training

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    labels = []
    real_shard = training.shard

    def spy(batch, r, size):  # record which labels this rank held in each step
        mine = real_shard(batch, r, size)
        labels.append(sorted({int(gi) for gi in mine}))
        return mine

    training.shard = spy
    try:
        for method in METHODS:  # one pair of processes for all methods (start-up is the cost)
            labels.clear()
            params, res = _train(method)
            seen[(rank, method)] = list(labels)
            if rank == 0:
                result = {"params": params, "loss": [h["loss"] for h in res.history]}
                torch.save(result, f"{out}.{method}")
    finally:
        dist.destroy_process_group()


def test_shard_covers_the_global_batch_once():
    batch = {0: torch.arange(3)[:, None], 2: torch.arange(10, 14)[:, None]}
    parts = [shard(batch, r, 3) for r in range(3)]
    rows = sorted(int(x) for part in parts for blocks in part.values() for x in blocks)
    assert rows == [0, 1, 2, 10, 11, 12, 13]
    assert sum(len(b) for b in parts[0].values()) == 3  # rows 0, 3, 6 of the 7
    assert shard(batch, 0, 1) is batch


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    ctx = mp.get_context("spawn")
    out = str(tmp_path / "rank0.pt")
    init = f"file://{tmp_path / 'rendezvous'}"
    with ctx.Manager() as manager:
        seen = manager.dict()
        procs = [ctx.Process(target=_worker, args=(r, 2, init, out, seen)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=300)
            assert p.exitcode == 0, f"rank exited with {p.exitcode}"
        seen = dict(seen)
    return out, seen


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_equal_one(two_process_runs, method):
    out, seen = two_process_runs
    # the ranks really held blocks of different labels in some step
    ranks = zip(seen[(0, method)], seen[(1, method)], strict=True)
    assert any(a != b for a, b in ranks), seen
    two = torch.load(f"{out}.{method}", weights_only=True)
    one, res = _train(method)
    torch.testing.assert_close(two["loss"], [h["loss"] for h in res.history], atol=1e-6, rtol=1e-6)
    for name, p in one.items():
        torch.testing.assert_close(two["params"][name], p, atol=1e-5, rtol=1e-5, msg=name)
    if method.startswith("sgtm"):  # two processes' one pass against one process's label passes
        per_label, _ = _train(method, one_pass=False)
        for name, p in per_label.items():
            torch.testing.assert_close(two["params"][name], p, atol=1e-5, rtol=1e-5, msg=name)
    if method == "sgtm-strict":  # elements frozen in one process are frozen, bit for bit, in two
        model = tiny_gpt_neo()
        init_params = dict(model.named_parameters())
        for name in forget_masks(model, Partition.for_model(model, 16, 1)):
            same = torch.eq(one[name], init_params[name])
            assert torch.equal(same, torch.eq(two["params"][name], init_params[name])), name


def test_single_process_result_is_unchanged_by_the_sharding_code():
    """world size 1 goes through the same code path with the whole batch: bit-identical reruns."""
    a, _ = _train("sgtm")
    b, _ = _train("sgtm")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert dataclasses.is_dataclass(CFG)
