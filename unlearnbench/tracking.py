"""Experiment tracking: a run's training curves, final metrics and attack curves, live, in
TensorBoard or Weights & Biases (`--log tensorboard`, `--log wandb`, or both).

- `tensorboard`: event files under `<store>/tensorboard/<run_id>/` (`tensorboard --logdir
  <store>/tensorboard`); an attack suite adds its own event file to the run's directory.
- `wandb`: one W&B run per training run and per attack suite (grouped by run id), written under
  `<store>/wandb/`; `WANDB_MODE` decides online or offline when set, else online once you are
  logged in (`wandb login`, or `WANDB_API_KEY`) and offline before (no network needed; `wandb
  sync` uploads it later); the project is `WANDB_PROJECT`, default `unlearnbench`.

What is written (the record stays the source of truth; this is a view of it):
- every training step: `train/loss`, `train/lr` (a run of several phases: `train/<phase>/...`),
  and the test losses measured every `eval_every` steps, `train/eval/<split>_loss`;
- at the end of a run: each number of its metrics, `metrics/<key>` (`metrics/forget_loss`,
  `metrics/pre_finalize/forget_loss`, ...), tokens seen and training seconds; in TensorBoard also
  the run's config as HParams (section.key, e.g. `train.lr`), with the final losses as its metrics;
- after a suite: each evaluation's headline metrics, `<SUITE/KEY>/<metric>`, and its curve rows as
  `<SUITE/KEY>/<setting>/<split>_loss` over the attack's steps (setting e.g.
  `lr=0.001,attack_seed=0,mode=full`).

Both need the `track` extra: `pip install "unlearnbench[track]"`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable
from pathlib import Path

from unlearnbench.config import ConfigError

# tracker -> the module it needs
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}
INSTALL = 'pip install "unlearnbench[track]"'


def parse_trackers(names: Iterable[str] | str | None) -> tuple[str, ...]:
    """`--log` values (repeatable, or comma-separated) as tracker names; a ConfigError for an
    unknown name or a tracker whose package is not installed, before anything runs."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for raw in names or ():
        for name in (n.strip().lower() for n in str(raw).split(",")):
            if not name or name == "none":
                continue
            if name not in TRACKERS:
                raise ConfigError(
                    f"unknown tracker {name!r} for --log; choose {', '.join(TRACKERS)}"
                )
            if importlib.util.find_spec(TRACKERS[name]) is None:
                raise ConfigError(f"--log {name} needs the {TRACKERS[name]} package: {INSTALL}")
            if name not in out:
                out.append(name)
    return tuple(out)


class Tracker:
    """Writes scalars to every chosen backend. `job` is "train" or the suite's name."""

    def __init__(
        self,
        names: tuple[str, ...],
        root: str | Path,
        run_id: str,
        job: str = "train",
        config: dict | None = None,
    ):
        self.names = tuple(names)
        self._config = config or {}
        self._job = job
        self._tb = self._wandb = None
        self._namespaces: set[str] = set()
        root = Path(root)
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(root / "tensorboard" / run_id))
        if "wandb" in self.names:
            import wandb

            (root / "wandb").mkdir(parents=True, exist_ok=True)
            self._wandb = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "unlearnbench"),
                name=run_id if job == "train" else f"{run_id} {job}",
                group=run_id,
                job_type=job,
                config=config or {},
                dir=str(root),
                mode=wandb_mode(os.environ),
            )

    # ---- what the harness logs ----

    def log_step(self, entry: dict, phase: str | None = None) -> None:
        """One training step's history entry: loss, lr, and the test losses when measured."""
        ns = f"train/{phase}" if phase else "train"
        values = {k: entry[k] for k in ("loss", "lr", "selection_loss") if _number(entry.get(k))}
        measured = (entry.get("eval") or {}).items()  # split -> test loss
        values |= {f"eval/{_loss_name(k)}": v for k, v in measured if _number(v)}
        self.scalars(ns, int(entry["step"]), values)

    def log_metrics(self, record: dict, step: int = 0) -> None:
        """The run's final metrics (every number in them, by path), tokens and seconds."""
        values = _flatten(record.get("metrics") or {})
        values |= {k: record[k] for k in ("tokens_seen", "train_seconds") if _number(record.get(k))}
        self.scalars("metrics", step, values)
        if self._wandb is not None:
            self._wandb.summary.update({f"metrics/{k}": v for k, v in values.items()})
        if self._tb is not None and self._job == "train" and self._config:
            # HParams: one row per run in TensorBoard's table, its final losses as the metrics
            final = {f"hparams/{k}": v for k, v in values.items() if k.endswith("_loss")}
            self._tb.add_hparams(hparams(self._config), final, run_name=".")

    def log_eval(self, key: str, summary: dict, curves: list[dict] | None) -> None:
        """One suite entry's headline metrics and its curve rows (step, split, loss, setting)."""
        head = {
            h["name"]: h["value"] for h in summary.get("headline") or [] if _number(h.get("value"))
        }
        self.scalars(key, 0, head)
        if self._wandb is not None:
            self._wandb.summary.update({f"{key}/{k}": v for k, v in head.items()})
        for row in curves or []:
            if not (_number(row.get("step")) and _number(row.get("loss"))):
                continue
            setting = ",".join(
                f"{k}={_text(v)}"
                for k, v in row.items()
                if k not in ("step", "split", "loss", "budget")
            )
            ns = f"{key}/{setting}" if setting else key
            self.scalars(ns, int(row["step"]), {f"{row.get('split', 'test')}_loss": row["loss"]})

    # ---- the backends ----

    def scalars(self, namespace: str, step: int, values: dict) -> None:
        """`namespace/name` = value at `step`, for every (name, value)."""
        if not values:
            return
        if self._tb is not None:
            for name, v in values.items():
                self._tb.add_scalar(f"{namespace}/{name}", float(v), step)
        if self._wandb is not None:
            # each namespace has its own step axis: phases and attack settings restart at 0,
            # and a W&B run's own step must only grow
            if namespace not in self._namespaces:
                self._wandb.define_metric(f"{namespace}/step")
                self._wandb.define_metric(f"{namespace}/*", step_metric=f"{namespace}/step")
                self._namespaces.add(namespace)
            self._wandb.log(
                {f"{namespace}/step": step, **{f"{namespace}/{k}": v for k, v in values.items()}}
            )

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def open_tracker(
    names, root, run_id: str, job: str = "train", config: dict | None = None
) -> Tracker | None:
    """A Tracker for the chosen trackers, or None when none is chosen."""
    names = parse_trackers(names)
    return Tracker(names, root, run_id, job, config) if names else None


def wandb_mode(environ) -> str:
    """`WANDB_MODE` when set; else online when the user is logged in (`WANDB_API_KEY`, or the
    key `wandb login` stores in ~/.netrc), offline otherwise (a run needs no network)."""
    import netrc
    from urllib.parse import urlparse

    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    if environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        stored = netrc.netrc(environ.get("NETRC") or None).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        stored = None
    return "online" if stored else "offline"


def hparams(config: dict, prefix: str = "") -> dict:
    """A run config flattened for TensorBoard's HParams: `section.key` -> a number, bool or
    string (lists and None as text)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= hparams(value, f"{name}.")
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def _loss_name(split: str) -> str:
    return split if split.endswith("_loss") else f"{split}_loss"


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v  # not NaN


def _text(v) -> str:
    text = f"{v:g}" if isinstance(v, float) else str(v)
    return re.sub(r"[^\w.\-+]", "_", text)


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    """Every number of a nested mapping, keyed by its path (`pre_finalize/forget_loss`)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, f"{path}/")
        elif _number(v):
            out[path] = v
    return out
