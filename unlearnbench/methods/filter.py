"""`filter`: data filtering. Drops documents labeled forget (SGTM's weak filter, ERA's "data
filtering"); `strict` also drops documents the classifier flags as adjacent (SGTM's strict filter).
With recall 1.0 it is the perfect filter: a model never exposed to the forget split.

How a dropped document costs steps: ours (the default) fills every step with the documents kept,
so the filter makes as many updates as every other method (compute matched). The SGTM reference
draws one source per step (trainer.py:248-259, 510-533) and skips a step drawn as forget while
its lr scheduler advances (trainer.py:537-540), so it makes fewer updates over the same schedule:
`skip_forget_steps` with `sampling: single_source`. Where that option still differs from the
reference (ours, each for the reason given at the option):
- the chance that a step is drawn as forget is the forget-labeled blocks' (tokens') share of the
  selected blocks; the reference's is its examples' (stories') share, trainer.py:251-255, which is
  one half on TinyStories (every Spanish story is the translation of an English one);
- an undiscovered forget document (recall < 1) is labeled unlabeled and trains in mixed steps
  with the other unlabeled blocks; the reference trains it in all-Spanish steps (its true source
  drawn, trainer.py:510, its label noise applied per step, :513-515);
- a skipped step counts no training tokens; the reference counts every step, skipped ones too
  (trainer.py:600 "tokens_processed = args.logical_batch_size * global_step * args.context_size")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from unlearnbench.config import ConfigError
from unlearnbench.methods import RunContext, register_method
from unlearnbench.methods._trainers import SGTM_TRAINER
from unlearnbench.training import Objective, check_sampling


@dataclass(frozen=True)
class FilterOptions:
    # the weak filter (adjacent documents kept) by default: wiki/run.sh:69 "--upsample-adjacent-set
    # 1.0" in the run "wiki_254M_weak_filter"; strict drops them too, :89 "--upsample-adjacent-set 0.0"
    strict: bool = False
    # "mixed" = ours: every step draws from all kept blocks; "single_source" = the SGTM
    # reference's: one source per step (trainer.py:510 "batch_true_label =
    # data_split_order[global_step]"). Ours: a step's label is drawn with its share of the
    # selected blocks, that is of their tokens (`training.BlockSampler`, as for sgtm); the
    # reference's order holds one entry per example (trainer.py:254 '+ ["forget"] *
    # int(len(forget_dataset["train"]) * args.upsample_forget_set)'), one story on TinyStories
    # (data/tinystories_tokenize_and_split.py:19 "tokens = tokens[: max_len - 1]"), and every
    # Spanish story translates an English one (:82 'lambda example: {"text": example["text_es"]}'),
    # so half its steps are drawn as forget. Ours because our documents are packed into blocks
    # and no document count reaches the sampler; a language that takes more tokens per story
    # gets more steps here (with skip_forget_steps: more skipped, fewer updates)
    sampling: str = "mixed"
    # ours (False): no step is spent on forget-labeled documents; every step trains on kept ones
    # (the same number of updates as every other method: compute matched). True: the
    # reference's: forget-labeled blocks are drawn with their share and their steps skipped, the
    # scheduler still stepping (trainer.py:537-540 'if batch_applied_label == "forget" and not
    # args.inject_forget: for scheduler in schedulers.values(): scheduler.step() continue').
    # Ours, with it: undiscovered forget documents (recall < 1) are labeled unlabeled, so they
    # train in mixed steps with the unlabeled blocks, not in all-forget steps as the reference's
    # (trainer.py:515 'batch_applied_label = "default"' on a step drawn as forget); and a skipped
    # step counts no tokens, the reference counts every step (trainer.py:600 "tokens_processed =
    # args.logical_batch_size * global_step * args.context_size"): tokens_seen stays the tokens
    # trained on
    skip_forget_steps: bool = False
    # earlier runs had neither option: their ids stay the same
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("sampling", "skip_forget_steps")

    def __post_init__(self):  # refused when the run is configured, before anything runs
        check_sampling("filter", self.sampling)
        if self.skip_forget_steps and self.sampling != "single_source":
            raise ConfigError("filter: skip_forget_steps needs sampling: single_source")


# version 2: the SGTM trainer's defaults (no clipping, weight decay on every parameter)
@register_method(
    "filter", kind="training", options=FilterOptions, train_defaults=SGTM_TRAINER, version=2
)
def setup(ctx: RunContext, options: FilterOptions) -> Objective:
    """Data filtering: train only on documents not labeled forget (strict: nor flagged adjacent).

    `skip_forget_steps`: forget-labeled blocks are drawn too, and the steps they are drawn for are
    skipped (the reference's filter)."""

    def trains_on(group) -> bool:
        if group.label == "forget":
            return options.skip_forget_steps  # drawn only to be skipped
        return not (options.strict and group.flagged_adjacent)

    return Objective(
        model=ctx.model,
        trains_on=trains_on,
        sampling=options.sampling,
        skip_labels=frozenset({"forget"}) if options.skip_forget_steps else frozenset(),
    )
