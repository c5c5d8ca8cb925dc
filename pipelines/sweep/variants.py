"""The kinds of points a sweep evaluates besides the configured variants, declared once.

A point's `variant` is the name of a configured variant (a front of the sweep, e.g. "soup" or "lines") or one of
the kinds below. The strings are what points.jsonl, points.csv and the sweep's cache keys hold: changing one
changes every key.
"""
from __future__ import annotations

UNIFORM = "uniform"  # the tuned uniform control: the linear soup scaled by one λ chosen on validation prompts
MATCHED = "matched"  # a LiNeS front's norm-matched uniform control: its front is `matched[<variant>]`
BASE = "base"  # θ0 itself
POLICY = "policy"  # one single policy (its candidate: the reward's name)
REFERENCE = "reference"  # a policy shown beside the fronts but not merged (e.g. the MORL baseline)
FORGET_LINES = "forget_lines"  # forgetting study: a policy's task vector edited by LiNeS (α=γ, β=1−γ)
FORGET_UNIFORM = "forget_uniform"  # forgetting study: the task vector scaled uniformly by γ
FORGET_MATCHED = "forget_matched"  # forgetting study: uniform scaling with the LiNeS edit's norm

FORGETTING = (FORGET_LINES, FORGET_UNIFORM, FORGET_MATCHED)
# Points that are not on a front of the weights: θ0, the single policies, the references and the forgetting study.
NOT_FRONTS = (BASE, POLICY, REFERENCE, *FORGETTING)
# Kinds a configured variant may not be named after (its points would be taken for them).
RESERVED_NAMES = frozenset({UNIFORM, MATCHED, BASE, POLICY, REFERENCE, *FORGETTING})


def matched_front(front: str) -> str:
    """The front of the norm-matched control of the LiNeS front `front`."""
    return f"{MATCHED}[{front}]"
