"""One policy to train: its name, training signal and settings, and what training hands back."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reward_models import Reward

from ..config.training import PolicyTraining
from ..prompts import Prompt


@dataclass
class PolicyJob:
    name: str                  # directory under policies/ (the reward's name, or the MORL policy's)
    reward: Reward             # the training signal
    settings: PolicyTraining
    seed: int
    where: str                 # for error messages: config file and entry
    base_path: Path            # θ0
    train_prompts: list[Prompt]
    work_dir: Path             # scratch space, removed when the policy is finished
    log_dir: Path | None = None  # the trainer's own directory (TensorBoard events), kept; default: under work_dir

    def trainer_dir(self, part: str = "") -> Path:
        """Where trl's trainer writes (its output_dir): `log_dir` (runs/<run>/logs/<policy>), one part per DPO round."""
        root = self.log_dir if self.log_dir is not None else self.work_dir / "trainer"
        return root / part if part else root


@dataclass
class TrainOutcome:
    curve: list[dict]
    details: dict = field(default_factory=dict)  # e.g. DPO pair statistics per round


def trl_prompt(tokenizer, text: str):
    """A prompt as trl expects it: conversational (so trl applies the chat template, as generation does) when
    the tokenizer has a chat template, plain text otherwise."""
    if getattr(tokenizer, "chat_template", None):
        return [{"role": "user", "content": text}]
    return text


def trl_completion(tokenizer, text: str):
    if getattr(tokenizer, "chat_template", None):
        return [{"role": "assistant", "content": text}]
    return text
