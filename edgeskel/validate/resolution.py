"""Can the validation split decide what it is asked to decide? Say so when it cannot.

A user's NW-UCLA model had 102 validation clips from the training views, which scored every
candidate 100%: the tie went to the factorized model silently, and the report read as if the
choice had been made. One clip of a validation split of n clips is 100/n points: two scores
within one clip are a tie the data cannot break, and a gate tighter than one clip (a 1-point
INT8 gate on 48 clips) cannot be resolved at all. These warnings go to the log and the report,
with what to do about it.
"""

from __future__ import annotations

from typing import Any

ADVICE = ("use a larger or harder validation split, e.g. one from a held-out view or subject "
          "(data.validation: test, or data.validation_fraction)")


def validation_warnings(num_val: int | None, selection: dict[str, Any] | None,
                        max_drop_points: float | None, agreement_samples: int | None = None) -> list[str]:
    """Plain sentences (no markup) for the log and the report; empty when validation can decide."""
    out: list[str] = []
    if not num_val:
        return out
    clip = 100.0 / num_val
    a = (selection or {}).get("top1_factorized")
    b = (selection or {}).get("top1_finetuned")
    if a is not None and b is not None:
        if a >= 100.0 - 1e-9 and b >= 100.0 - 1e-9:
            out.append(f"validation is saturated: the factorized and the fine-tuned model both score 100% on its "
                       f"{num_val} clips, so it cannot tell them apart (the {selection.get('deployed')} model was "
                       f"kept by the tie rule, not by the data); {ADVICE}")
        elif abs(a - b) <= clip + 1e-9:
            why = ("kept by the tie rule" if abs(a - b) < 1e-9 else
                   "chosen on a difference one clip can make")
            out.append(f"validation cannot decide factorized ({a:.2f}) vs fine-tuned ({b:.2f}): they differ by at "
                       f"most one of its {num_val} clips ({clip:.2f} points), so the {selection.get('deployed')} model "
                       f"was {why}; {ADVICE}")
    if max_drop_points is not None and clip > max_drop_points + 1e-9:
        extra = (f"; INT8 is also held to at most {max_drop_points:g}% flipped predictions on {agreement_samples} "
                 "unlabelled clips (export.agreement_samples)" if agreement_samples else "")
        out.append(f"validation is too small for the {max_drop_points:g}-point accuracy gates: one of its {num_val} "
                   f"clips is {clip:.2f} points, so a gate passed there may not hold on test{extra}; {ADVICE}")
    return out
