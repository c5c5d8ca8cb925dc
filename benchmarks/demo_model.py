"""The demo-size Llama, its tokenizer, two "policies" and prompts, built locally for the sweep and throughput
benchmarks (nothing downloaded; reused from the work directory when already there).

Model: hidden 128, intermediate 256, 4 layers, 4 heads, 2 KV heads, tied embeddings, vocab 1024, fp32 (what the
demo runs on CPU). Tokenizer: byte-level BPE trained here on template restaurant-review sentences. θ0 is random;
each policy is θ0 plus small seeded noise, as fine-tuning gives. Training quality does not matter for timing.
"""
from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONFIG = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=1024, max_position_embeddings=256, tie_word_embeddings=True)
POLICY_NOISE = 0.002  # per-element std of each policy's update (θ0's weights are N(0, 0.02))
VERSION = 1  # bump when anything above changes, so a stale work directory is rebuilt

_SUBJECTS = ["the food", "the soup", "our waiter", "the staff", "the wine", "the dessert", "the view", "the menu",
             "the pasta", "the steak", "the service", "the terrace", "the bread", "the coffee", "lunch here",
             "the room", "the music", "the chef", "the bill", "the salad"]
_VERBS = ["was", "seemed", "felt", "looked", "tasted", "turned out"]
_ADJECTIVES = ["great", "lovely", "wonderful", "excellent", "friendly", "cold", "slow", "bland", "awful",
               "noisy", "fine", "ordinary", "fresh", "overpriced", "charming", "rude", "quick", "delicious"]
_ENDINGS = ["", " and we will come back", " but the wait was long", " so we left early", " for the price",
            " as always", " according to my friend", " on a busy friday night", " and the river view helped"]


def corpus(n: int = 4000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_ADJECTIVES)}{rng.choice(_ENDINGS)}."
            for _ in range(n)]


def prompts(n: int = 128) -> list[tuple[str, str]]:
    """n distinct short prompts as (prompt_id, text), in a fixed order."""
    texts = [f"{s} {v}" for s, v in itertools.product(_SUBJECTS, _VERBS)]
    texts += [f"{s} {v} {a}" for s, v, a in itertools.product(_SUBJECTS, _VERBS, _ADJECTIVES)]
    if n > len(texts):
        raise ValueError(f"at most {len(texts)} prompts")
    chosen = random.Random(1).sample(texts, n)
    return [(f"p{i:04d}", t) for i, t in enumerate(chosen)]


def train_tokenizer(vocab_size: int = CONFIG["vocab_size"]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(**CONFIG, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                       architectures=["LlamaForCausalLM"])


def _perturbed(model, seed: int, scale: float):
    import copy

    gen = torch.Generator().manual_seed(seed)
    policy = copy.deepcopy(model)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return policy


def build(root: Path) -> dict:
    """θ0, two policies (each with the tokenizer) and the prompt list under `root`; reused when present."""
    from transformers import LlamaForCausalLM

    root = Path(root)
    stamp = root / "built.json"
    paths = {"base": root / "base", "policies": [root / "policy_positive", root / "policy_long"]}
    if stamp.exists() and json.loads(stamp.read_text()).get("version") == VERSION:
        return paths
    tokenizer = train_tokenizer()
    torch.manual_seed(0)
    base = LlamaForCausalLM(llama_config()).eval()
    models = [(paths["base"], base)] + [(p, _perturbed(base, i + 1, POLICY_NOISE))
                                        for i, p in enumerate(paths["policies"])]
    for path, model in models:
        model.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))
    stamp.write_text(json.dumps({"version": VERSION, "tokenizer_vocab": len(tokenizer),
                                 "parameters": sum(p.numel() for p in base.parameters())}))
    return paths


def describe(root: Path) -> dict:
    info = json.loads((Path(root) / "built.json").read_text())
    return {**{k: v for k, v in CONFIG.items()}, "tokenizer_vocab": info["tokenizer_vocab"],
            "parameters": info["parameters"], "dtype": "float32", "policy_noise": POLICY_NOISE}


def timed_generations(generator, prompts, repeats: int, warmup: int) -> tuple[list[float], list]:
    """Wall seconds of `repeats` calls of generator.generate(prompts), after one call on the first `warmup` prompts
    (first-call costs — kernels, caches — paid outside the timing), and the rows of the last call."""
    import time

    generator.generate(prompts[:warmup])
    walls, rows = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        rows = generator.generate(prompts)
        walls.append(time.perf_counter() - start)
    return walls, rows
