"""The sampling settings, declared once: every section that samples from a policy (the sweep's `generation:`, DPO's
sampled pairs `training.dpo`, online RL `training.rl`, the training stage's held-out `evaluation:`) types its
`temperature`, `top_p` and `max_new_tokens` with these, so the bounds are one set.

Each section places the fields among its own, so its YAML and its dumps (written configs, cache keys) keep their
shape and order, and states its default: 1.0 for temperature and top_p everywhere; max_new_tokens 64 for the sweep's
generation and 48 in the training stage. How many samples a prompt gets keeps each section's name (`n`,
`samples_per_prompt`, `num_generations`); DPO's pairs and online RL's groups need two.
"""
from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import Field

# temperature 0 is greedy decoding; the sections that compare several samples of a prompt (DPO's pairs, online RL's
# groups) refuse it on top of this bound (config/training.py, `sampling_temperature`).
Temperature = Annotated[float, Field(ge=0)]
TopP = Annotated[float, Field(gt=0, le=1)]
MaxNewTokens = Annotated[int, Field(ge=1)]
SamplesPerPrompt = Annotated[int, Field(ge=1)]
# A group to compare within: DPO's best and worst of k, RLOO's leave-one-out and GRPO's group baseline.
SamplesPerGroup = Annotated[int, Field(ge=2)]

# The fields every sampling section shares, with their one type and bounds.
SAMPLING_FIELDS = {"temperature": Temperature, "top_p": TopP, "max_new_tokens": MaxNewTokens}


def sample_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one sample, from the run seed, the prompt's id and the sample's index.

    Seeding each sample on its own makes it independent of batch size, prompt order and n: sample k of
    a prompt is the same whether 2 or 8 samples are drawn. 32 bits, which every backend accepts.
    """
    digest = hashlib.sha256(f"{seed}/{prompt_id}/{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
