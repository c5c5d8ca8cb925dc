"""Why each surviving mutant of benchmarks/mutation_score.py is equivalent: mutmut's mutant name -> the reason.

A mutant is equivalent when no input a caller can give makes the mutated function behave differently (results,
errors and types alike); one that is not is killed by a new test instead of being listed here. Names are mutmut's
(module, function, number): they stay valid while the function's source does not change.
"""

EQUIVALENT: dict[str, str] = {}
