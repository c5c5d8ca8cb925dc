"""The LiNeS schedule λ(ℓ) = α + β·ℓ/(L−1) and the per-group L1 profile (α, the LiNeS update's norm, the matched λ),
against exact fractions written from the formulas. Fast: the mutation score's tests."""
from __future__ import annotations

from fractions import Fraction

import pytest

from lines.errors import LinesError
from lines.layer_map import BLOCK, EMBEDDING, FINAL, HEAD, ParamRole
from lines.schedule import LinesSchedule
from lines.update_norms import MergeProfile, group_of, normalised_weights, role_of


def exact_scales(alpha, beta, layers, profile="increasing"):
    alpha, beta = Fraction(alpha), Fraction(beta)
    shift = Fraction(1, 2) if profile == "centered" else 0
    if layers == 1:
        return [float(alpha + beta * (1 - shift))]
    return [float(alpha + beta * (Fraction(l, layers - 1) - shift)) for l in range(layers)]


@pytest.mark.parametrize("layers", [1, 2, 3, 5, 12])
@pytest.mark.parametrize("profile", ["increasing", "centered"])
@pytest.mark.parametrize("alpha,beta", [("0.2", "0.6"), ("1", "0.5"), ("0.25", "-0.5"), ("0", "1")])
def test_layer_scales_equal_the_formula(layers, profile, alpha, beta):
    schedule = LinesSchedule(alpha=float(alpha), beta=float(beta), num_layers=layers, profile=profile)
    assert schedule.layer_scales() == pytest.approx(exact_scales(alpha, beta, layers, profile), abs=1e-15)
    assert len(schedule.layer_scales()) == layers


def test_first_and_last_blocks_and_the_centered_mean():
    s = LinesSchedule(alpha=0.3, beta=0.4, num_layers=4)
    assert s.layer_scale(0) == pytest.approx(0.3) and s.layer_scale(3) == pytest.approx(0.7)
    centered = LinesSchedule(alpha=0.3, beta=0.4, num_layers=4, profile="centered")
    assert centered.layer_scale(0) == pytest.approx(0.1) and centered.layer_scale(3) == pytest.approx(0.5)
    assert sum(centered.layer_scales()) / 4 == pytest.approx(0.3)  # mean over the blocks is α
    assert LinesSchedule(alpha=0.3, beta=0.4, num_layers=1).layer_scale(0) == pytest.approx(0.7)  # the last block


@pytest.mark.parametrize("head_depth", ["alpha", "last"])
def test_parameters_outside_the_blocks(head_depth):
    s = LinesSchedule(alpha=0.2, beta=0.6, num_layers=3, head_depth=head_depth)
    last = 0.2 + 0.6
    assert s.scale(ParamRole(BLOCK, 1)) == pytest.approx(0.5)
    assert s.scale(ParamRole(EMBEDDING)) == pytest.approx(0.2)  # embeddings always get α
    for kind in (FINAL, HEAD):
        assert s.scale(ParamRole(kind)) == pytest.approx(last if head_depth == "last" else 0.2)


def test_single_task_editing():
    edit = LinesSchedule.single_task(gamma=0.25, num_layers=5)
    assert (edit.alpha, edit.beta, edit.num_layers, edit.head_depth, edit.profile) == (0.25, 0.75, 5, "alpha",
                                                                                       "increasing")
    assert edit.layer_scale(0) == pytest.approx(0.25) and edit.layer_scale(4) == pytest.approx(1.0)
    assert edit.scale(ParamRole(HEAD)) == pytest.approx(0.25)
    assert LinesSchedule.single_task(0.5, 2, head_depth="last").scale(ParamRole(HEAD)) == pytest.approx(1.0)


# -- the profile: α, the LiNeS update's norm and the norm-matched λ ---------------------------------------------------

PROFILE = MergeProfile(merged_l1={"block:0": 2.0, "block:1": 3.0, "block:2": 5.0, "embedding": 4.0, "head": 6.0},
                       mean_l1={"block:0": 1.0, "block:1": 1.5, "block:2": 2.0, "embedding": 2.0, "head": 3.5})


def test_alpha_is_the_ratio_of_the_total_norms():
    assert PROFILE.alpha() == pytest.approx(10.0 / 20.0)


@pytest.mark.parametrize("head_depth", ["alpha", "last"])
@pytest.mark.parametrize("profile", ["increasing", "centered"])
def test_update_norm_and_matched_lambda_by_hand(head_depth, profile):
    s = LinesSchedule(alpha=0.5, beta=1.0, num_layers=3, head_depth=head_depth, profile=profile)
    shift = 0.5 if profile == "centered" else 0.0
    blocks = [0.5 + (depth - shift) for depth in (0.0, 0.5, 1.0)]
    head = blocks[2] if head_depth == "last" else 0.5
    expected = sum(abs(b) * n for b, n in zip(blocks, (2.0, 3.0, 5.0))) + 0.5 * 4.0 + abs(head) * 6.0
    assert PROFILE.update_l1(s) == pytest.approx(expected)
    assert PROFILE.matched_lambda(s) == pytest.approx(expected / 20.0)


def test_negative_scales_count_by_their_magnitude():
    s = LinesSchedule(alpha=-0.5, beta=0.0, num_layers=3)
    assert PROFILE.update_l1(s) == pytest.approx(0.5 * 20.0) and PROFILE.matched_lambda(s) == pytest.approx(0.5)


def test_a_zero_merged_update_has_no_alpha_and_no_matched_lambda():
    zero = MergeProfile(merged_l1={"block:0": 0.0}, mean_l1={"block:0": 1.0})
    with pytest.raises(LinesError, match=r"^lines.alpha: auto is undefined because the merged task vector is zero "
                                         r"\(policies identical to the base\?\); give a number instead$"):
        zero.alpha()
    with pytest.raises(LinesError, match="^the merged task vector is zero: no uniform scale can match its norm$"):
        zero.matched_lambda(LinesSchedule(alpha=1.0, beta=0.0, num_layers=1))


def test_profiles_round_trip_and_groups_name_their_roles():
    again = MergeProfile.from_dict(PROFILE.to_dict())
    assert again == PROFILE and again.to_dict() == {"merged_l1": PROFILE.merged_l1, "mean_l1": PROFILE.mean_l1}
    assert group_of(ParamRole(BLOCK, 7)) == "block:7" and group_of(ParamRole(HEAD)) == "head"
    assert role_of("block:7") == ParamRole(BLOCK, 7) and role_of("embedding") == ParamRole(EMBEDDING)
    for role in (ParamRole(BLOCK, 0), ParamRole(FINAL), ParamRole(BLOCK, 11)):
        assert role_of(group_of(role)) == role


def test_normalised_weights():
    assert normalised_weights([1.0, 3.0]) == [0.25, 0.75]
    assert normalised_weights([0.2, 0.0, 0.6]) == pytest.approx([0.25, 0.0, 0.75])
    with pytest.raises(LinesError, match="^lines.alpha: auto weighs the task vectors by w / Σw, and these weights sum "
                                         "to zero; give alpha as a number$"):
        normalised_weights([0.5, -0.5])


def test_reversed_profile_is_the_same_values_in_decreasing_order():
    from lines.schedule import LinesSchedule

    for profile in ("increasing", "centered"):
        forward = LinesSchedule(1.0, 0.8, 6, profile=profile)
        backward = LinesSchedule(1.0, 0.8, 6, profile=profile, reverse=True)
        assert backward.layer_scales() == pytest.approx(forward.layer_scales()[::-1], abs=1e-15)
        assert backward.layer_scales()[0] > backward.layer_scales()[-1]
    # by hand, L = 3, α = 1, β = 1, centered: forward 0.5, 1, 1.5; reversed 1.5, 1, 0.5
    assert LinesSchedule(1.0, 1.0, 3, profile="centered", reverse=True).layer_scales() == [1.5, 1.0, 0.5]


def test_head_only_scales_the_final_norm_and_head_alone():
    from lines.layer_map import BLOCK, EMBEDDING, FINAL, HEAD, ParamRole
    from lines.schedule import LinesSchedule

    head = LinesSchedule(1.0, 2.0, 4, head_depth="last", profile="centered", scope="head")
    full = LinesSchedule(1.0, 2.0, 4, head_depth="last", profile="centered")
    assert head.layer_scales() == [1.0] * 4
    for kind in (FINAL, HEAD):
        assert head.scale(ParamRole(kind)) == full.scale(ParamRole(kind)) == 2.0  # α + β/2, as head_depth: last
    assert head.scale(ParamRole(EMBEDDING)) == 1.0 and head.scale(ParamRole(BLOCK, 3)) == 1.0
    assert full.scale(ParamRole(BLOCK, 0)) == 0.0
