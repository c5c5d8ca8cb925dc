"""The rewarded-soup sweep: merge every point in memory into the live model, generate, score, cache."""
