"""Rule rewards a tiny random θ0 can move in either direction within a few PPO steps (the tests' signals).

The share of a response's letters that fall in a–m is about one half for a random model, and every token moves it
one way or the other, so both it and its negation give a dense learning signal.
"""
from __future__ import annotations


def first_half_letters(prompts: list[str], responses: list[str]) -> list[float]:
    """Share of the response's letters in a–m (0.5, neutral, for a response without letters)."""
    out = []
    for response in responses:
        letters = [c for c in response.lower() if "a" <= c <= "z"]
        out.append(sum(c <= "m" for c in letters) / len(letters) if letters else 0.5)
    return out


def first_half_letters_negated(prompts: list[str], responses: list[str]) -> list[float]:
    """The same reward with its sign flipped."""
    return [-value for value in first_half_letters(prompts, responses)]
