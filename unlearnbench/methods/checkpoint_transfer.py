"""`checkpoint-transfer`: pull the final model's forget activations back to an earlier, ignorant
checkpoint of the same training run (EleutherAI/unlearn, `checkpoint_transfer_unlearn.py` with
`online_affine_fitter.py`).

Given `checkpoint`, a saved model (HF directory) of the same run taken while its forget loss was
still near its initial level:
1. Per target block l, fit an affine map A_l h + b_l from the checkpoint's activations to the final
   model's, by ridge regression (alpha `ridge_alpha`, the bias unpenalized) on retain-labeled
   training blocks (where both models agree on what the text means), so the checkpoint's
   representation is expressed in the final model's basis (reference: `OnlineAffineFitter`).
2. Train the final model: forget-labeled blocks: mean over layers of the MSE between h_l and the
   mapped checkpoint activation A_l h_l^ckpt + b_l at counted positions; retain-labeled blocks:
   retain_coef * the KL divergence KL(p_base || p_model) of the next-token distributions, summed
   over the vocabulary and averaged over positions (the reference's default; `retain_loss="mse"`:
   MSE(h_l, h_l^base) on the target blocks, `"ce"`: the LM loss, its two alternatives).
   Reference schedule (s = step / total): c_r = retain_coef * s, c_f = remove_coef * (1 - s / 4).

Without `checkpoint`, the checkpoint is chosen from the snapshots the base run recorded (train
`snapshot_every`; e.g. a `no-filter` run with `forget_after=0.5`, whose forget-labeled documents
enter only halfway): the latest snapshot whose forget loss is at least (1 - checkpoint_tolerance)
times the first snapshot's, i.e. still near its ignorant level (`choose_snapshot`). The choice goes
into the record.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnbench.config import ConfigError
from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._loss_based import nll
from unlearnbench.methods._posthoc import all_parameter_names, ramped_coefficients
from unlearnbench.methods.routing import labeled_blocks
from unlearnbench.methods.token_selection import apply_token_selection, position_mask
from unlearnbench.models.arch import num_blocks
from unlearnbench.models.hidden import block_outputs, frozen_copy
from unlearnbench.training import Objective

RETAIN_LOSSES = ("kl", "mse", "ce")


@dataclass(frozen=True)
class CheckpointTransferOptions:
    # an earlier saved model of the same run; empty = ours: chosen from the base run's snapshots
    # (the reference names a fixed pretraining checkpoint, checkpoint_transfer_unlearn.py:554
    # 'checkpoint_revision: str = "global_step38144"')
    checkpoint: str = ""
    # ours: "near the initial level" = forget loss within 10% below the first snapshot's
    checkpoint_tolerance: float = 0.1
    # empty = every block, as the reference's target layers, checkpoint_transfer_unlearn.py:549
    # "layers: list[int] = field(default_factory=lambda: list(range(32)))" (all 32 blocks)
    layers: tuple[int, ...] = ()
    fit_blocks: int = 64  # ours: retain-labeled blocks for the fit (reference: 100000 examples)
    # ridge penalty on A (added to the centered sums of squares; b is not penalized; 0 = plain
    # least squares): online_affine_fitter.py:18 'def __init__(self, hidden_dim, device="cpu",
    # alpha=0.01):' (solved at :66-77); the hub maps the reference loads by default
    # (checkpoint_transfer_unlearn.py:561 'load_affine_from_hub: str | None =
    # "EleutherAI/affine-checkpoint-transfer"') were fit with checkpoint_transfer_unlearn.py:717
    # "alpha=0.01,"
    ridge_alpha: float = 0.01
    # "kl" (KL on output logits) | "mse" (hidden states of the target blocks) | "ce" (LM loss);
    # reference: checkpoint_transfer_unlearn.py:562 "retain_kl_loss: bool = True", :563
    # "retain_ce_loss: bool = False"
    retain_loss: str = "kl"
    remove_coef: float = 5.0  # checkpoint_transfer_unlearn.py:542 "remove_coef: float = 5.0"
    retain_coef: float = 5.0  # checkpoint_transfer_unlearn.py:541 "retain_coef: float = 5.0"
    forget_tokens: str = "all"  # per-token unlearning: "all" | "ratio" | "list" (ours)
    forget_token_list: tuple[str, ...] = ()  # "list": vocabulary entries or one-token texts (ours)
    forget_token_threshold: float = 0.5  # "ratio": ERA weight below this (ours: w = 1/2)
    # which positions (ours): "target" (those predicting a selected token, as ERA routes) | "input"
    forget_token_position: str = "target"


def fit_affine(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression A (d, d), b (d,) with y ~ x @ A.T + b, for x, y (N, d): minimizes
    ||y - x A^T - b||^2 + alpha ||A||_F^2, the bias unpenalized. As the reference's
    `OnlineAffineFitter.solve`: W = (Xc^T Xc + alpha I)^-1 Xc^T Yc on centered data, b = mu_y -
    mu_x W. alpha = 0 is plain least squares (lstsq also copes with a singular Xc^T Xc)."""
    x, y = x.double(), y.double()
    mu_x, mu_y = x.mean(dim=0), y.mean(dim=0)  # (d,)
    xc, yc = x - mu_x, y - mu_y  # (N, d)
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    W = torch.linalg.lstsq(xc.T @ xc + alpha * eye, xc.T @ yc).solution  # (d, d): y ~ x @ W
    b = mu_y - mu_x @ W  # (d,)
    return W.T.float().contiguous(), b.float()


def retain_kl(logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_base || p_model) per position, summed over the vocabulary, mean over positions, for
    logits (B, T, V) (reference: F.kl_div(log p_model, log p_base, log_target=True).sum(-1))."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    logp_base = F.log_softmax(base_logits.float(), dim=-1)  # (B, T, V)
    kl = F.kl_div(logp, logp_base, reduction="none", log_target=True).sum(dim=-1)  # (B, T)
    return kl.mean()


def choose_snapshot(snapshots: list[dict], tolerance: float) -> dict:
    """The latest snapshot (by step) whose forget loss is >= (1 - tolerance) x the first one's."""
    ordered = sorted(snapshots, key=lambda s: s["step"])
    ignorant = ordered[0]["forget_loss"]
    near = [s for s in ordered if s["forget_loss"] >= (1.0 - tolerance) * ignorant]
    return near[-1]  # the first snapshot always qualifies


def base_snapshots(ctx) -> list[dict]:
    """The base run's recorded snapshots; a ConfigError saying how to make them when there are none."""
    record = ctx.base_record or {}
    snaps = [s for s in (record.get("metrics") or {}).get("snapshots", []) if s.get("forget_loss")]
    if snaps:
        return snaps
    cfg = ctx.config
    which = f"base run {record['run_id']}" if record else f"base {ctx.base_model_path!r}"
    raise ConfigError(
        f"checkpoint-transfer: the {which} recorded no snapshots with a forget loss; train one, "
        f"e.g. `unlearnbench run no-filter --benchmark {cfg.benchmark} --model {cfg.model} "
        f"--seed {cfg.seed} --set forget_after=0.5 --set snapshot_every=25`, and pass "
        "base=<its model_path>, or give checkpoint=<a saved earlier model>"
    )


def checkpoint_transfer_objective(model, checkpoint, fit, options) -> Objective:
    n = num_blocks(model)
    layers = tuple(options.layers) or tuple(range(n))
    if not all(0 <= li < n for li in layers):
        raise ValueError(f"layers {layers} outside 0..{n - 1}")
    frozen, ckpt = frozen_copy(model), frozen_copy(checkpoint)
    device = next(model.parameters()).device
    ckpt.to(device)
    with torch.no_grad():
        x = block_outputs(ckpt, fit[:, :-1].to(device), layers)
        y = block_outputs(frozen, fit[:, :-1].to(device), layers)
    alpha = options.ridge_alpha
    maps = {
        li: fit_affine(x[li].flatten(0, 1).cpu(), y[li].flatten(0, 1).cpu(), alpha) for li in layers
    }
    maps = {li: (A.to(device), b.to(device)) for li, (A, b) in maps.items()}
    coeffs, on_step = ramped_coefficients(options.remove_coef, options.retain_coef)

    def retain_term(m, inputs, targets):
        if options.retain_loss == "ce":
            return nll(m(input_ids=inputs).logits, targets)  # logits (B, T, V)
        if options.retain_loss == "kl":
            with torch.no_grad():
                base_logits = frozen(input_ids=inputs).logits  # (B, T, V)
            return retain_kl(m(input_ids=inputs).logits, base_logits)
        hs = block_outputs(m, inputs, layers)  # {l: (B, T, d)}
        with torch.no_grad():
            ref = block_outputs(frozen, inputs, layers)
        mse = [F.mse_loss(hs[li].float(), ref[li].float()) for li in layers]
        return torch.stack(mse).mean()

    def loss(m, inputs, targets, label):
        if label == "forget":
            hs = block_outputs(m, inputs, layers)  # {l: (B, T, d)}
            mask = position_mask(targets)  # (B, T, 1)
            with torch.no_grad():
                hc = block_outputs(ckpt, inputs, layers)
            terms = []
            for li in layers:
                A, b = maps[li]
                goal = hc[li].float() @ A.T + b  # (B, T, d)
                err = (hs[li].float() - goal).pow(2).mean(dim=-1, keepdim=True)  # (B, T, 1)
                terms.append((err * mask).sum() / mask.sum().clamp(min=1.0))
            return coeffs["forget"] * torch.stack(terms).mean()
        return coeffs["retain"] * retain_term(m, inputs, targets)

    return Objective(
        model=model,
        batch_plan={"forget": 0.5, "retain": 0.5},  # reference: (retain, forget) pairs
        loss=loss,
        trainable=all_parameter_names(model),
        reduction="labels",
        on_step=on_step,
    )


# version 2: its default base, the no-filter run, now trains as the SGTM reference does;
# version 3: its default base is the curriculum no-filter run (below)
@register_method(
    "checkpoint-transfer",
    kind="posthoc",
    options=CheckpointTransferOptions,
    train_defaults={
        # reference: lr 1e-3 with LoRA (:538, :548); ours: full fine-tuning at lr 1e-4 for 100 steps
        "steps": 100,
        "lr": 1e-4,
        # ours: 4 + 4 blocks (reference: checkpoint_transfer_unlearn.py:539-566, 4 per device, 32)
        "batch_size": 8,
        # transformers TrainingArguments' max_grad_norm default 1.0, which the reference's
        # checkpoint_transfer_unlearn.py:753-769 leaves as it is (:767 'optim="adamw_torch",')
        "grad_clip": 1.0,
        # HF Trainer decays all but biases and layer norms (get_decay_parameter_names): the default
        # optimizer (checkpoint_transfer_unlearn.py:568 'optimizer: Literal["adamw", "muon"] =
        # "adamw"') trains with :166 "class RRTrainer(UnlearningTrainer):", which keeps the HF
        # Trainer's create_optimizer
        "weight_decay_groups": "matrices",
        # no warmup: checkpoint_transfer_unlearn.py:765 "warmup_steps=10 if run_cfg.lr_warmup else
        # 0," with :565 "lr_warmup: bool = False"; then the HF Trainer's default linear decay to 0
        # (ours: cosine to 0)
        "warmup_steps": 0,
        "weight_decay": 0.01,  # checkpoint_transfer_unlearn.py:760 "weight_decay=0.01,"
        # transformers' adam_beta2 default, left as it is: checkpoint_transfer_unlearn.py:767
        # 'optim="adamw_torch",'
        "beta2": 0.999,
    },
    # ours: its default base is the curriculum no-filter run (presets/no-filter-curriculum.yaml):
    # forget-labeled documents enter halfway and 10 snapshots are saved per run, so an earlier
    # checkpoint of the same run that has not learned the forget data exists (the reference takes
    # one from its pretraining run, checkpoint_transfer_unlearn.py); the plain no-filter run has
    # none. Version 3: that base
    base_settings={"method.forget_after": 0.5, "train.snapshot_every": 120},
    version=3,
)
def setup(ctx: RunContext, options: CheckpointTransferOptions) -> Objective:
    """Checkpoint transfer: forget activations -> an ignorant checkpoint's, affinely mapped."""
    if not 0.0 <= options.checkpoint_tolerance < 1.0:
        raise ValueError(
            f"checkpoint_tolerance must be in [0, 1), got {options.checkpoint_tolerance}"
        )
    if options.retain_loss not in RETAIN_LOSSES:
        raise ValueError(
            f"retain_loss must be one of {', '.join(RETAIN_LOSSES)}, got {options.retain_loss!r}"
        )
    if options.ridge_alpha < 0:
        raise ValueError(f"ridge_alpha must be >= 0, got {options.ridge_alpha}")
    from unlearnbench.models.build import load_model
    from unlearnbench.models.compat import check_run_model

    path, chosen = options.checkpoint, None
    if not path:
        snaps = base_snapshots(ctx)
        chosen = choose_snapshot(snaps, options.checkpoint_tolerance)
        path = chosen["path"]
    try:
        checkpoint = load_model(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load checkpoint {path!r}: {str(e).splitlines()[0]}") from None
    check_run_model(checkpoint, path, ctx.benchmark, ctx.config, "checkpoint")
    retain = labeled_blocks(ctx, "retain")[: options.fit_blocks]
    if not len(retain):
        raise ValueError("checkpoint-transfer needs labeled retain blocks to fit the affine maps")
    obj = checkpoint_transfer_objective(ctx.model, checkpoint, retain, options)
    obj.extra_metrics["checkpoint"] = {"path": path}
    if chosen is not None:
        obj.extra_metrics["checkpoint"] |= {
            "step": chosen["step"],
            "forget_loss": chosen["forget_loss"],
            "first_forget_loss": min(snaps, key=lambda s: s["step"])["forget_loss"],
            "snapshot_steps": sorted(s["step"] for s in snaps),
        }
    return apply_token_selection(ctx, obj, options)
