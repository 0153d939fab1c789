"""Per-token unlearning: restrict a post-hoc method's forget loss to selected tokens.

A method opts in with four options (see `apply_token_selection`):
- `forget_tokens`: "all" (default: every counted token of forget documents), "ratio" (tokens
  that are far more frequent in forget-labeled than in retain-labeled training blocks, by ERA's
  per-token weight w = 1 - sigmoid((r - 1/r) - 4) of smoothed unigram frequencies; a token is
  selected when w < `forget_token_threshold`), or "list" (the entries of `forget_token_list`,
  written as vocabulary entries or one-token texts, "_" for a leading space, as for ERA routing);
- `forget_token_list`, `forget_token_threshold`, `forget_token_position` (below).

Positions are chosen by their target (the predicted next token), as ERA routes, or with
`forget_token_position="input"` by the token they hold. The difference matters to representation
losses: the hidden state at a position that predicts a forget word encodes the context before the
word, the one at the word itself encodes the word. The forget loss of a forget-labeled micro-batch
sees targets with every unselected position set to IGNORE: loss-based methods (NLL, NPO) then count
the selected positions only, and representation losses that average over counted positions
(`position_mask`) use only those.
The selection (count and the tokens themselves) goes into the run record.
"""

from __future__ import annotations

import torch

from unlearnbench.config import ConfigError
from unlearnbench.data.packing import IGNORE
from unlearnbench.methods._token_weights import token_weights, unigram_counts
from unlearnbench.methods.routing import labeled_blocks, resolve_route_tokens
from unlearnbench.training import Objective

MODES = ("all", "ratio", "list")
POSITIONS = ("target", "input")
REPORTED_TOKENS = 100  # ours: the record lists at most this many selected tokens


def select_by_ratio(
    forget_blocks: torch.Tensor,
    retain_blocks: torch.Tensor,
    vocab_size: int,
    eos_id: int,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Token ids whose ERA weight (Cloud et al.: add-k 1 forget, 20 retain, shift 4) is below
    `threshold`, ordered from the most forget-specific (smallest weight). Tokens absent from the
    forget blocks are never selected."""
    f = unigram_counts(forget_blocks, vocab_size, eos_id)  # (V,)
    r = unigram_counts(retain_blocks, vocab_size, eos_id)  # (V,)
    w = token_weights(f, r)  # (V,)
    picked = ((w < threshold) & (f > 0)).nonzero().flatten()
    return picked[torch.argsort(w[picked], stable=True)]


def restrict_targets(
    targets: torch.Tensor, token_ids: torch.Tensor, inputs: torch.Tensor | None = None
) -> torch.Tensor:
    """A copy of `targets` (B, T) with IGNORE at every position whose target (or, given `inputs`
    (B, T), whose input token) is not selected."""
    keep = torch.isin(targets if inputs is None else inputs, token_ids.to(targets.device))  # (B, T)
    return torch.where(keep, targets, torch.full_like(targets, IGNORE))


def position_mask(targets: torch.Tensor) -> torch.Tensor:
    """(B, T, 1) float: 1 where the target is counted; for representation losses."""
    return (targets != IGNORE).unsqueeze(-1).float()


def masked_mean(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of per-position values x (B, T) over counted positions (0 when none is counted)."""
    m = (targets != IGNORE).float()  # (B, T)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def check_token_options(options) -> None:
    """Refuse a bad selection before any work (a method with an earlier phase calls this first)."""
    mode = getattr(options, "forget_tokens", "all")
    if mode not in MODES:
        raise ConfigError(f"forget_tokens must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "list" and not getattr(options, "forget_token_list", ()):
        raise ConfigError("forget_tokens=list needs forget_token_list")
    position = getattr(options, "forget_token_position", "target")
    if position not in POSITIONS:
        raise ConfigError(
            f"forget_token_position must be one of {', '.join(POSITIONS)}, got {position!r}"
        )


def selected_tokens(ctx, options) -> torch.Tensor | None:
    """The selected token ids for the run in `ctx` (None: mode "all"). Reads labels only."""
    check_token_options(options)
    mode = getattr(options, "forget_tokens", "all")
    if mode == "all":
        return None
    bench = ctx.benchmark
    if mode == "list":  # a non-empty list (checked above)
        return resolve_route_tokens(bench.tokenizer, tuple(options.forget_token_list))
    threshold = getattr(options, "forget_token_threshold", 0.5)
    forget, retain = labeled_blocks(ctx, "forget"), labeled_blocks(ctx, "retain")
    if not len(forget) or not len(retain):
        raise ConfigError("forget_tokens=ratio needs labeled forget and retain training blocks")
    ids = select_by_ratio(forget, retain, ctx.model.config.vocab_size, bench.eos_id, threshold)
    if not len(ids):
        raise ConfigError(f"no token has an ERA weight below {threshold}")
    return ids


def with_token_selection(
    objective: Objective, token_ids: torch.Tensor, names, position: str = "target"
) -> Objective:
    """Wrap the objective's loss: forget-labeled micro-batches count only the selected positions."""
    inner = objective.loss

    def loss(model, inputs, targets, label):
        if label != "forget":
            return inner(model, inputs, targets, label)
        kept = restrict_targets(targets, token_ids, inputs if position == "input" else None)
        if not (kept != IGNORE).any():  # nothing selected here: no forget gradient
            return torch.zeros((), device=targets.device, requires_grad=True)
        return inner(model, inputs, kept, label)

    objective.loss = loss
    objective.extra_metrics["forget_tokens"] = {
        "count": int(len(token_ids)),
        "tokens": list(names)[:REPORTED_TOKENS],
    }
    return objective


def apply_token_selection(ctx, objective: Objective, options) -> Objective:
    """Apply the options' `forget_tokens` selection (if any) to `objective`."""
    ids = selected_tokens(ctx, options)
    if ids is None:
        return objective
    names = ctx.benchmark.tokenizer.convert_ids_to_tokens(ids.tolist())
    position = getattr(options, "forget_token_position", "target")
    objective = with_token_selection(objective, ids, names, position)
    objective.extra_metrics["forget_tokens"]["mode"] = options.forget_tokens
    objective.extra_metrics["forget_tokens"]["position"] = position
    return objective
