"""No leak between what θ0 and the policies train on and what the sweep measures, for every seed of a study.

For several seeds of configs/demo.yaml (the config `make study` replicates), through the same functions the job calls
(config_for_seed → train_config → sft_rows / training_prompts; prompt_split of the sweep), no evaluation or validation
prompt, nor its opening sentence, appears in any SFT text of θ0 or any training prompt of the policies.
"""
from __future__ import annotations

import re

import pytest

from pipelines.config.load import config_for_seed, load_run_config
from pipelines.prompts import EVALUATION, VALIDATION, prompt_split
from pipelines.training.prompt_sources import training_prompts
from pipelines.training.sft_data import sft_rows

SEEDS = [0, 1, 2, 5, 9]


def opening(text: str) -> str:
    """The first sentence of a prompt (a prompt may be longer than its opening)."""
    return re.match(r"[^.!?]*[.!?]", text).group(0)


def leaked(held_out: list[str], trained_on: list[str]) -> list[str]:
    """The held-out prompts whose text or opening occurs anywhere in the trained-on texts (substring search)."""
    blob = "\n".join(trained_on)
    return [p for p in held_out if p in blob or opening(p) in blob]


@pytest.fixture(scope="module")
def study_config():
    return load_run_config("configs/demo.yaml", ["seeds=[0,1,2,5,9]"], check_paths=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_held_out_prompt_in_anything_trained_on(study_config, seed):
    cfg = config_for_seed(study_config, seed)
    train = cfg.train_config
    corpus = [row["text"] for row in sft_rows(train.base.sft.data, train.seed)]
    train_prompts, train_held_out = training_prompts(train.prompts)
    trained_on = corpus + [p.prompt for p in train_prompts]
    sweep = prompt_split(cfg.prompts)
    held_out = [p.prompt for p in sweep[EVALUATION] + sweep[VALIDATION] + train_held_out]
    assert len(held_out) >= 96 + 32 and len(corpus) == train.base.sft.data.n
    assert leaked(held_out, trained_on) == []


def test_the_check_finds_a_planted_leak(study_config):
    """The check itself: a corpus drawn with a seed-dependent partition (the old bug) is caught."""
    from pipelines.demo import data

    cfg = config_for_seed(study_config, 1)
    held_out = [p.prompt for p in prompt_split(cfg.prompts)[EVALUATION]]
    corpus = [row["text"] for row in sft_rows(cfg.train_config.base.sft.data, 1)]
    assert leaked(held_out, corpus) == []
    saved = data._partition
    try:
        data._partition = lambda: {k: v for k, v in zip(
            ("validation", "test", "train"),
            (lambda r: (r[:data.N_VALIDATION], r[data.N_VALIDATION:data.N_VALIDATION + data.N_TEST],
                        r[data.N_VALIDATION + data.N_TEST:]))(
                sorted(data._all_openings(), key=lambda t: data._split_rank(1, t))))}
        bad = [row["text"] for row in sft_rows(cfg.train_config.base.sft.data, 1)]
    finally:
        data._partition = saved
    assert len(leaked(held_out, bad)) >= 1


def test_seed_reorders_within_parts_only():
    from pipelines.demo.data import prompt_splits

    parts = {s: prompt_splits(s) for s in (0, 3)}
    for split in ("train", "validation", "test"):
        assert set(parts[0][split]) == set(parts[3][split]) and parts[0][split] != parts[3][split]
