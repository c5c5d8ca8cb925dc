"""How a prompt (and response) becomes model input, shared by generation, reward models and KL.

One place, so the KL metric re-tokenises a prompt exactly as the generator formatted it.
"""
from __future__ import annotations

from typing import Literal

from .rm_formats import fill

InputFormat = Literal["auto", "chat", "pair", "concat"]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def policy_prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids a policy generates from: the chat template (user turn + generation prompt) when the
    tokenizer has one, else the raw prompt with the tokenizer's usual special tokens (e.g. BOS)."""
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        # The rendered template already holds BOS etc.; adding them again would double them.
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]


def response_ids(tokenizer, response: str) -> list[int]:
    """A response's tokens as they follow the prompt (no special tokens added)."""
    return tokenizer(response, add_special_tokens=False)["input_ids"]


def resolve_input_format(tokenizer, input_format: InputFormat) -> str:
    if input_format == "auto":
        return "chat" if has_chat_template(tokenizer) else "concat"
    return input_format


def rm_text(tokenizer, prompt: str, response: str, input_format: str, separator: str,
            prompt_template: str | None = None, response_template: str | None = None) -> str | tuple[str, str]:
    """The text a reward model reads for one pair.

    The templates come first: `prompt_template` with "{prompt}" replaced by the prompt (e.g. hh-rlhf's
    "\\n\\nHuman: {prompt} \\n\\nAssistant:"), `response_template` with "{response}" replaced by the response. Then:
    chat:   the RM's chat template over [user: prompt, assistant: response] (rendered as a string, then
            tokenised without extra special tokens, since the template holds them);
    pair:   (prompt, response) as a tokenizer text pair (the tokenizer adds its pair special tokens, if any);
    concat: prompt + separator + response (default separator "\\n").
    """
    prompt = fill(prompt_template, "{prompt}", prompt)
    response = fill(response_template, "{response}", response)
    if input_format == "chat":
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": response}], tokenize=False)
    if input_format == "pair":
        return (prompt, response)
    return prompt + separator + response
