"""Shared pieces of the post-hoc methods (not a method: modules starting with "_" are not scanned)."""

from __future__ import annotations


def run_groups(ctx) -> list:
    """The run's labeled training blocks as the runner built them (label and flag, never the
    true split), for methods that need data before training (norms, lenses)."""
    return ctx.labeled_groups()


def all_parameter_names(model) -> list[str]:
    """Every parameter (full fine-tuning). Explicit, because an earlier phase of a method may have
    frozen some and the loop only changes requires_grad for names it is given."""
    return [n for n, _ in model.named_parameters()]


def ramped_coefficients(remove_coef: float, retain_coef: float):
    """EleutherAI unlearn's schedule: the retain weight ramps from 0 to `retain_coef` and the forget
    weight falls from `remove_coef` to 0.75 * `remove_coef` over training. Returns the live
    coefficients (read them inside the loss) and the `on_step` hook that updates them."""
    coeffs = {"retain": 0.0, "forget": remove_coef}

    def on_step(step: int, total: int) -> None:
        s = step / max(1, total)
        coeffs["retain"] = retain_coef * s
        coeffs["forget"] = remove_coef * (1 - 0.25 * s)

    return coeffs, on_step
