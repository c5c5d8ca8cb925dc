"""Why each surviving mutant of benchmarks/mutation_score.py is equivalent: mutmut's mutant name -> the reason.

A mutant is equivalent when no input a caller can give makes the mutated function behave differently (results,
errors and types alike); one that is not is killed by a new test instead of being listed here. Names are mutmut's
(module, function, number): they stay valid while the function's source does not change.
"""

_FLOAT_ANYWAY = ("numpy gives the same float64 result without the explicit dtype: the inputs are Python floats "
                 "(or ints, which the following arithmetic turns into float64 with the same values)")
_NAN_ANYWAY = ("numpy's std with ddof=1 of fewer than two values is already NaN (with a RuntimeWarning), which is "
               "what the guarded branch returns")

EQUIVALENT: dict[str, str] = {
    # -- lines/merge_methods.py
    "lines.merge_methods.x_disjoint_merge__mutmut_40": (
        "Where the denominator is 1, dividing by it or by the substitute 1 is the same; where it is 0 the outer "
        "torch.where returns 0 whatever the division gave."),
    "lines.merge_methods.x_disjoint_merge__mutmut_41": (
        "The substitute divisor only serves entries whose denominator is 0, and the outer torch.where replaces "
        "those entries with 0 whatever they were divided by."),
    "lines.merge_methods.x_dare_seed__mutmut_8": (
        "Read little-endian, a ninth byte only adds bits 64-71, and the mask keeps bits 0-62: the same seed."),
    "lines.merge_methods.x_dare_keep_mask__mutmut_7": (
        "torch.rand draws a float exactly equal to the density with probability ~2^-24 per entry; no seed in use "
        "hits it, and `<` vs `<=` differ only there."),
    "lines.merge_methods.x_slerp__mutmut_39": (
        "sin Ω equal to the threshold exactly (1e-6 by default) is a measure-zero event; on either side of it both "
        "versions agree, and at it both formulas give the same interpolation to rounding."),
    "lines.merge_methods.x_trim_to_density__mutmut_13": (
        "With k = 0, topk(0) selects no entry, so `kept` stays all zeros: the same as skipping the selection."),
    "lines.merge_methods.x_trim_to_density__mutmut_19": (
        "Whether topk returns its indices sorted does not change the set of indices, and only the set is used."),
    "lines.merge_methods.x_trim_to_density__mutmut_20": (
        "Whether topk returns its indices sorted does not change the set of indices, and only the set is used."),
    "lines.merge_methods.x_trim_to_density__mutmut_6": (
        "With k = n the mutant takes topk(n), which keeps every entry: the same tensor as the clone (a new one too)."),
    # -- lines/update_norms.py
    **{f"lines.update_norms.x_merge_profile__mutmut_{n}": (
        "Display only: an argument of the progress bar (its default, total, label, whether it is shown or left on "
        "screen). The bar is written to stderr when progress is on; no value the function returns changes.")
       for n in (1, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 27)},
    "lines.update_norms.x_merge_profile__mutmut_39": (
        "The cache test `id(None) not in mean_weights` is always true because entries are stored under id(settings): "
        "the mutant recomputes each tensor's normalised weights instead of reusing them, with the same values "
        "(tests/test_lines_alpha.py checks α with weights that differ between tensors)."),
    # -- pipelines/pareto.py
    "pipelines.pareto.x_hypervolume__mutmut_3": _FLOAT_ANYWAY + ".",
    "pipelines.pareto.x_hypervolume__mutmut_5": _FLOAT_ANYWAY + ".",
    "pipelines.pareto.x_hypervolume__mutmut_8": _FLOAT_ANYWAY + ".",
    "pipelines.pareto.x_hypervolume__mutmut_10": _FLOAT_ANYWAY + ".",
    "pipelines.pareto.x_hypervolume__mutmut_19": (
        "A point equal to the reference in some objective dominates a box of zero volume, so keeping it (>=) "
        "adds 0: every slice it enters has zero width or zero height in that objective."),
    "pipelines.pareto.x_hypervolume__mutmut_53": (
        "A slice of height 0 adds 0 × (its area): skipping it or adding it is the same sum."),
    "pipelines.pareto.x_orient__mutmut_12": (
        "The signs are ±1, and dividing by ±1 is multiplying by it, exactly in floating point."),
    "pipelines.pareto.x_orient__mutmut_14": _FLOAT_ANYWAY + " (multiplied by float64 signs).",
    "pipelines.pareto.x_orient__mutmut_16": _FLOAT_ANYWAY + " (multiplied by float64 signs).",
    "pipelines.pareto.x_pareto_front__mutmut_3": (
        "Dominance compares values; comparisons of the same numbers as ints or floats agree."),
    "pipelines.pareto.x_pareto_front__mutmut_5": (
        "Dominance compares values; comparisons of the same numbers as ints or floats agree."),
    # -- pipelines/summary.py
    "pipelines.summary.x_compare__mutmut_3": _FLOAT_ANYWAY + ".",
    "pipelines.summary.x_compare__mutmut_5": _FLOAT_ANYWAY + ".",
    "pipelines.summary.x_compare__mutmut_9": _FLOAT_ANYWAY + ".",
    "pipelines.summary.x_compare__mutmut_11": _FLOAT_ANYWAY + ".",
    "pipelines.summary.x_compare__mutmut_26": _NAN_ANYWAY + ".",
    "pipelines.summary.x_compare__mutmut_32": _NAN_ANYWAY + ".",
    "pipelines.summary.x_summarize__mutmut_3": _FLOAT_ANYWAY + ".",
    "pipelines.summary.x_summarize__mutmut_5": _FLOAT_ANYWAY + ".",
    "pipelines.summary.x_summarize__mutmut_42": _NAN_ANYWAY + " (one prompt; no prompt: the std of nothing, NaN).",
    "pipelines.summary.x_summarize__mutmut_46": _NAN_ANYWAY + " (one prompt).",
    "pipelines.summary.x_summarize__mutmut_51": (
        "The mean of no values is NaN in numpy too (with a RuntimeWarning), which is what the guarded branch returns."),
    "pipelines.summary.x_summarize__mutmut_59": (
        "With one prompt the spread is already NaN and NaN / 1 is NaN; with none the guard still holds (0 < 1)."),
    # -- pipelines/sweep/weights.py
    "pipelines.sweep.weights.x_simplex_grid__mutmut_33": (
        "`divisions × step − 1` is exactly 1e-9 in magnitude for no step a user can write; `>` and `>=` differ only "
        "there."),
    "pipelines.sweep.weights.x_simplex_grid__mutmut_43": (
        "A combination with an entry of divisions + 1 sums to more than `divisions` and is dropped by the filter "
        "that follows, so the extra candidates never reach the grid."),
}
