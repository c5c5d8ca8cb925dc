"""Tiny checkpoints and tokenizers built locally from configs, so no test ever touches a hub."""
from __future__ import annotations

import os
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_DECODER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=320, max_position_embeddings=64)

# model_type -> (config class name, kwargs). Small enough that a test builds one in milliseconds.
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", _DECODER),
    "mistral": ("MistralConfig", _DECODER),
    "qwen2": ("Qwen2Config", _DECODER),
    "qwen3": ("Qwen3Config", {**_DECODER, "head_dim": 8}),
    "gemma": ("GemmaConfig", {**_DECODER, "head_dim": 8}),
    "gemma2": ("Gemma2Config", {**_DECODER, "head_dim": 8}),
    "gemma3_text": ("Gemma3TextConfig", {**_DECODER, "head_dim": 8}),
    "phi3": ("Phi3Config", {**_DECODER, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}),
    "gpt2": ("GPT2Config", dict(n_embd=16, n_layer=3, n_head=2, vocab_size=320, n_positions=64,
                                bos_token_id=1, eos_token_id=2)),
    "gpt_neox": ("GPTNeoXConfig", dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                      num_attention_heads=2, vocab_size=320, max_position_embeddings=64)),
    "opt": ("OPTConfig", dict(hidden_size=16, ffn_dim=32, num_hidden_layers=3, num_attention_heads=2,
                              vocab_size=320, word_embed_proj_dim=16, max_position_embeddings=64)),
    "falcon": ("FalconConfig", dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, vocab_size=320)),
}


def tiny_config(family: str, **overrides):
    import transformers

    cls_name, kwargs = FAMILIES[family]
    return getattr(transformers, cls_name)(**{**kwargs, **overrides})


def tiny_model(family: str, seed: int = 0, head: str = "causal_lm", dtype=torch.float32, **overrides):
    """A randomly initialised tiny model; `head` is 'causal_lm' or 'seq_cls'."""
    import transformers

    torch.manual_seed(seed)
    config = tiny_config(family, **overrides)
    if head == "seq_cls":
        config.num_labels = overrides.get("num_labels", 1)
        if config.pad_token_id is None:
            config.pad_token_id = 0
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    else:
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model.to(dtype)


def perturbed_copy(model, seed: int, scale: float = 0.05):
    """A 'fine-tuned' policy: the same model with every floating parameter moved by seeded noise."""
    import copy

    gen = torch.Generator().manual_seed(seed)
    policy = copy.deepcopy(model)
    with torch.no_grad():
        for p in policy.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) * scale)
    return policy


def save(model, path: Path, max_shard_size: str | None = None) -> Path:
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(str(path), **kwargs)
    return Path(path)


def tiny_tokenizer(path: Path | None = None, vocab_size: int = 320):
    """A byte-level BPE trained in memory on a few sentences, with pad/eos/bos tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["the food was great and the staff were friendly",
              "the soup was cold and the service was slow",
              "we waited an hour for a table", "a lovely place with a view of the river"] * 4
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    if path is not None:
        fast.save_pretrained(str(path))
    return fast


# A minimal chat template (user/assistant turns, generation prompt) for tokenizers in tests.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token if m['role'] == 'assistant' else '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def with_chat_template(tokenizer):
    """The same tokenizer with CHAT_TEMPLATE set (returns it for chaining)."""
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_reward_model_dir(path: Path, family: str = "llama", num_labels: int = 1, id2label: dict | None = None,
                          seed: int = 0, chat_template: bool = False) -> Path:
    """A tiny sequence-classification checkpoint with its tokenizer, saved like a real RM."""
    overrides = {"num_labels": num_labels}
    if id2label is not None:
        overrides["id2label"] = {int(k): v for k, v in id2label.items()}
        overrides["label2id"] = {v: int(k) for k, v in id2label.items()}
    model = tiny_model(family, seed=seed, head="seq_cls", **overrides)
    model.config.pad_token_id = 0
    save(model, path)
    tokenizer = tiny_tokenizer()
    if chat_template:
        with_chat_template(tokenizer)
    tokenizer.save_pretrained(str(path))
    return Path(path)


def ties_recipe_on_two_policies(root: Path, max_shard_size: str, **model_kwargs) -> Path:
    """θ0 and two perturbed policies saved under `root`, and a recipe merging them by TIES (density 0.5, weights 0.3
    and 0.7) with LiNeS (α auto, β 0.6) into shards of at most `max_shard_size`: a merge with every pass (α auto's
    full pass, whole tensors per block) for the tests of how a merge is written."""
    import yaml

    root = Path(root)
    base = tiny_model("llama", seed=0, **model_kwargs)
    save(base, root / "base")
    tiny_tokenizer(root / "base")
    for i in range(2):
        save(perturbed_copy(base, seed=i + 1), root / f"p{i}")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "base_model": str(root / "base"), "method": "ties", "parameters": {"density": 0.5},
        "models": [{"model": str(root / "p0"), "weight": 0.3}, {"model": str(root / "p1"), "weight": 0.7}],
        "lines": {"alpha": "auto", "beta": 0.6}, "max_shard_size": max_shard_size}))
    return recipe
