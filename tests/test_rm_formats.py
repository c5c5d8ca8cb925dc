"""Reward models receive exactly the token ids of the format they were trained on.

Every expected sequence is built by hand here: the exact string the format prescribes, tokenised piece by piece,
with the special tokens placed by hand — never by calling the code under test.
"""
from __future__ import annotations

import pytest

import reward_models as rm
from reward_models import RewardError
from reward_models.rm_formats import format_settings, known_model, registry
from tiny import save, tiny_model, tiny_reward_model_dir, tiny_tokenizer, with_chat_template

PROMPT, RESPONSE = "was the soup good", "the soup was cold"


def received_ids(reward, prompt: str = PROMPT, response: str = RESPONSE) -> list[int]:
    """The token ids the reward model's forward pass receives for one pair (padding removed)."""
    seen = []
    forward = reward.model.forward

    def recording(input_ids, attention_mask, **kwargs):
        seen.extend(input_ids[row][attention_mask[row].bool()].tolist() for row in range(len(input_ids)))
        return forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    reward.model.forward = recording
    try:
        reward.score([prompt], [response])
    finally:
        reward.model.forward = forward
    assert len(seen) == 1
    return seen[0]


def plain(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def bos_adding_tokenizer():
    """A tokenizer that puts BOS before every text, as Llama-3's does."""
    from tokenizers import processors

    tok = tiny_tokenizer()
    bos = tok.convert_tokens_to_ids("<s>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B:1",
                                                                         special_tokens=[("<s>", bos)])
    return tok


def deberta_like_tokenizer():
    """A tokenizer that lays out pairs as [CLS] a [SEP] b [SEP], as DeBERTa's and ELECTRA's do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["the food was great and the staff were friendly", "the soup was cold and the service was slow"] * 4
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["[PAD]", "[CLS]", "[SEP]"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")


def rm_dir_with(tokenizer, path, family="llama"):
    model = tiny_model(family, seed=3, head="seq_cls", num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    save(model, path)
    tokenizer.save_pretrained(str(path))
    return path


# ---------------------------------------------------------------- exact ids per format
def test_hh_rlhf_format_gives_the_human_assistant_prompt_and_the_response_as_second_text(tmp_path):
    path = tiny_reward_model_dir(tmp_path / "gpt2", family="gpt2", seed=1)
    reward = rm.build_reward({"type": "hf", "path": str(path), "format": "hh-rlhf", "device": "cpu"})
    tok = reward.tokenizer
    # A GPT-2 tokenizer joins a pair without special tokens: the prompt's tokens, then the response's, each
    # tokenised on its own (so the response's first word has no leading space).
    expected = plain(tok, "\n\nHuman: was the soup good \n\nAssistant:") + plain(tok, "the soup was cold")
    assert received_ids(reward) == expected
    assert expected != plain(tok, PROMPT + "\n" + RESPONSE)  # the old concatenation: a different input


def test_text_pair_format_gives_cls_question_sep_answer_sep(tmp_path):
    tok = deberta_like_tokenizer()
    path = rm_dir_with(tok, tmp_path / "deberta")
    reward = rm.build_reward({"type": "hf", "path": str(path), "format": "text-pair", "device": "cpu"})
    cls, sep = tok.convert_tokens_to_ids("[CLS]"), tok.convert_tokens_to_ids("[SEP]")
    assert received_ids(reward) == [cls, *plain(tok, PROMPT), sep, *plain(tok, RESPONSE), sep]


def test_chat_format_renders_the_rm_template_with_one_bos(tmp_path):
    tok = with_chat_template(bos_adding_tokenizer())
    path = rm_dir_with(tok, tmp_path / "chat")
    reward = rm.build_reward({"type": "hf", "path": str(path), "format": "chat", "device": "cpu"})
    bos, eos = tok.convert_tokens_to_ids("<s>"), tok.convert_tokens_to_ids("</s>")
    # tests/tiny.py's template: "{bos}user: {prompt}\nassistant: {response}{eos}"; the tokenizer would add a
    # second BOS if the rendered text were tokenised with its special tokens.
    expected = [bos, *plain(tok, "user: was the soup good\nassistant: the soup was cold"), eos]
    received = received_ids(reward)
    assert received == expected and received.count(bos) == 1


def test_concat_format_joins_with_the_separator_and_keeps_the_tokenizers_bos(tmp_path):
    tok = bos_adding_tokenizer()
    path = rm_dir_with(tok, tmp_path / "concat")
    bos = tok.convert_tokens_to_ids("<s>")
    default = rm.build_reward({"type": "hf", "path": str(path), "device": "cpu"})
    assert received_ids(default) == [bos, *plain(tok, "was the soup good\nthe soup was cold")]
    templated = rm.build_reward({"type": "hf", "path": str(path), "input_format": "concat", "separator": " | ",
                                 "prompt_template": "Q: {prompt}?", "response_template": "A: {response}.",
                                 "device": "cpu"})
    assert received_ids(templated) == [bos, *plain(tok, "Q: was the soup good? | A: the soup was cold.")]


def test_templates_apply_to_pair_texts_too(tmp_path):
    tok = deberta_like_tokenizer()
    path = rm_dir_with(tok, tmp_path / "deberta")
    reward = rm.build_reward({"type": "hf", "path": str(path), "input_format": "pair",
                              "prompt_template": "Question: {prompt}", "response_template": "Answer: {response}",
                              "device": "cpu"})
    cls, sep = tok.convert_tokens_to_ids("[CLS]"), tok.convert_tokens_to_ids("[SEP]")
    assert received_ids(reward) == [cls, *plain(tok, "Question: was the soup good"), sep,
                                    *plain(tok, "Answer: the soup was cold"), sep]


# ---------------------------------------------------------------- the registry and the config
HH = "\n\nHuman: {prompt} \n\nAssistant:"


@pytest.mark.parametrize("model_id, input_format, prompt_template, output", [
    ("Ray2333/gpt2-large-helpful-reward_model", "pair", HH, "logits"),
    ("Ray2333/gpt2-large-harmless-reward_model", "pair", HH, "logits"),
    ("OpenAssistant/reward-model-deberta-v3-large-v2", "pair", None, "logits"),
    ("Skywork/Skywork-Reward-Llama-3.1-8B-v0.2", "chat", None, "logits"),
    ("Skywork/Skywork-Reward-V2-Llama-3.1-8B", "chat", None, "logits"),
    ("RLHFlow/ArmoRM-Llama3-8B-v0.1", "chat", None, "score"),
])
def test_a_known_hub_id_picks_its_format(model_id, input_format, prompt_template, output):
    spec = rm.parse_reward_spec({"type": "hf", "path": model_id, "trust_remote_code": True})
    assert (spec.input_format, spec.prompt_template, spec.response_template, spec.output) == \
        (input_format, prompt_template, None, output)
    assert not spec.uses_default_format and "known for" in spec.describe_format()


def test_stated_settings_override_the_known_format_and_the_resolved_spec_round_trips():
    spec = rm.parse_reward_spec({"type": "hf", "path": "Ray2333/gpt2-large-helpful-reward_model",
                                 "prompt_template": "Human: {prompt}\nAssistant:"})
    assert spec.input_format == "pair" and spec.prompt_template == "Human: {prompt}\nAssistant:"
    again = rm.parse_reward_spec(spec.model_dump(mode="json"))
    assert again == spec  # the resolved config written under runs/ reads back to the same format


def test_an_unknown_rm_uses_the_documented_default_and_says_so(tmp_path, caplog):
    spec = rm.parse_reward_spec({"type": "hf", "path": "someone/some-rm"})
    assert spec.uses_default_format and spec.input_format == "auto"
    assert "not a known reward model" in spec.describe_format()
    path = tiny_reward_model_dir(tmp_path / "rm", seed=1)
    with caplog.at_level("WARNING"):
        rm.build_reward({"name": "mine", "type": "hf", "path": str(path), "device": "cpu"})
    assert "reward 'mine': input format: the default" in caplog.text


@pytest.mark.parametrize("entry, fragment", [
    ({"path": "x", "format": "hh"}, "field 'format': unknown format 'hh'; use one of hh-rlhf, text-pair, chat"),
    ({"path": "x", "prompt_template": "Human: "}, "prompt_template must contain {prompt} exactly once"),
    ({"path": "x", "response_template": "{response} {response}"}, "response_template must contain {response}"),
    ({"path": "RLHFlow/ArmoRM-Llama3-8B-v0.1"}, "runs its own model code from its repository; set "
                                                "trust_remote_code: true"),
])
def test_bad_format_settings_are_one_line(entry, fragment):
    with pytest.raises(RewardError, match=fragment.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")
                       .replace(")", r"\)")) as info:
        rm.parse_reward_spec({"type": "hf", **entry})
    assert "\n" not in str(info.value)


def test_every_registry_entry_names_a_format_with_valid_settings():
    formats = registry()["formats"]
    for key, entry in registry()["models"].items():
        assert entry["format"] in formats, key
        assert entry.get("source"), f"{key}: say where the format comes from"
    for name in formats:
        settings = format_settings(name)
        assert settings["input_format"] in ("chat", "pair", "concat")
        rm.parse_reward_spec({"type": "hf", "path": "x", **settings})  # templates with their one slot
    assert known_model("Skywork/Skywork-Reward-Gemma-2-27B").key == "Skywork/Skywork-Reward-*"
    assert known_model("Skywork/Skywork-Critic-Llama-3.1-8B") is None


def test_the_real_config_feeds_its_rms_the_hh_rlhf_format():
    from pathlib import Path

    from pipelines.config.load import load_run_config

    cfg = load_run_config(Path(__file__).resolve().parents[1] / "configs" / "real_llama3_8b.yaml", check_paths=False)
    for spec in cfg.rewards:
        assert spec.type == "hf" and spec.format == "hh-rlhf" and spec.prompt_template == HH, spec.name


def test_a_changed_format_changes_the_scores_cache_key(tmp_path):
    path = tiny_reward_model_dir(tmp_path / "rm", seed=1)
    one = rm.reward_identity(rm.parse_reward_spec({"type": "hf", "path": str(path), "format": "hh-rlhf"}))
    two = rm.reward_identity(rm.parse_reward_spec({"type": "hf", "path": str(path), "input_format": "concat"}))
    assert one["spec"] != two["spec"]
