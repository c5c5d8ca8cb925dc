"""Rewards and policy metrics, each checked against an independent computation."""
from __future__ import annotations

import json
import math
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import reward_models as rm
from reward_models import PolicyHandle, RewardError
from tiny import perturbed_copy, tiny_model, tiny_reward_model_dir, tiny_tokenizer, with_chat_template

PROMPTS = ["how was the food", "tell me about the staff", "was the soup good", "the view", "a table for two"]
RESPONSES = ["the food was great", "the staff were friendly and the food was great and the view was lovely",
             "the soup was cold", "", "we waited an hour for a table and the service was slow"]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return tiny_reward_model_dir(tmp_path_factory.mktemp("rm"), seed=1)


@pytest.fixture(scope="module")
def labelled_rm_dir(tmp_path_factory):
    return tiny_reward_model_dir(tmp_path_factory.mktemp("rm3"), num_labels=3, seed=2,
                                 id2label={0: "hallucinated", 1: "neutral", 2: "faithful"})


def direct_logits(path, texts, add_special_tokens=True):
    """Unbatched forward passes with transformers alone: the reference for every RM score."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    with torch.no_grad():
        return [model(input_ids=torch.tensor([tok(t, add_special_tokens=add_special_tokens)["input_ids"]])).logits[0]
                for t in texts]


# ---------------------------------------------------------------- Hugging Face reward models
def test_hf_single_matches_direct_forward(rm_dir):
    reward = rm.build_reward({"name": "helpful", "type": "hf", "path": str(rm_dir), "batch_size": 2, "device": "cpu"})
    expected = [l[0].item() for l in direct_logits(rm_dir, [p + "\n" + r for p, r in zip(PROMPTS, RESPONSES)])]
    np.testing.assert_allclose(reward.score(PROMPTS, RESPONSES), expected, rtol=1e-5, atol=1e-5)
    assert reward.higher_is_better and reward.input_format == "concat"


def test_hf_batch_size_and_order_do_not_change_scores(rm_dir):
    scores = {bs: rm.HFRewardModel(str(rm_dir), batch_size=bs, device="cpu").score(PROMPTS, RESPONSES)
              for bs in (1, 2, 16)}
    np.testing.assert_allclose(scores[1], scores[2], atol=1e-5)
    np.testing.assert_allclose(scores[1], scores[16], atol=1e-5)
    assert np.ptp(scores[1]) > 0  # distinct inputs, distinct scores: order is observable
    perm = [3, 0, 4, 2, 1]
    permuted = rm.HFRewardModel(str(rm_dir), batch_size=2, device="cpu").score(
        [PROMPTS[i] for i in perm], [RESPONSES[i] for i in perm])
    np.testing.assert_allclose(permuted, scores[1][perm], atol=1e-5)


def test_hf_label_by_name_and_diff(labelled_rm_dir):
    logits = direct_logits(labelled_rm_dir, [p + "\n" + r for p, r in zip(PROMPTS, RESPONSES)])
    by_name = rm.build_reward({"type": "hf", "path": str(labelled_rm_dir), "mode": "label", "label": "faithful"})
    by_index = rm.build_reward({"type": "hf", "path": str(labelled_rm_dir), "mode": "label", "label": 1})
    diff = rm.build_reward({"type": "hf", "path": str(labelled_rm_dir), "mode": "diff",
                            "positive": "faithful", "negative": "hallucinated"})
    np.testing.assert_allclose(by_name.score(PROMPTS, RESPONSES), [l[2].item() for l in logits], atol=1e-5)
    np.testing.assert_allclose(by_index.score(PROMPTS, RESPONSES), [l[1].item() for l in logits], atol=1e-5)
    np.testing.assert_allclose(diff.score(PROMPTS, RESPONSES), [(l[2] - l[0]).item() for l in logits], atol=1e-5)


@pytest.mark.parametrize("config, fragment", [
    ({"mode": "single"}, "mode single needs a model with one output but it has 3 outputs"),
    ({"mode": "label", "label": 7}, "label index 7 is out of range"),
    ({"mode": "label", "label": "toxic"}, "'toxic' is not a label"),
])
def test_hf_wrong_labels_for_mode_is_one_line(labelled_rm_dir, config, fragment):
    with pytest.raises(RewardError, match=fragment) as info:
        rm.build_reward({"type": "hf", "path": str(labelled_rm_dir), **config})
    assert "\n" not in str(info.value)


def test_hf_diff_on_single_output_model_is_refused(rm_dir):
    with pytest.raises(RewardError, match="mode diff needs at least two labels"):
        rm.build_reward({"type": "hf", "path": str(rm_dir), "mode": "diff", "positive": 0, "negative": 1})


def test_hf_missing_path_is_one_line(tmp_path):
    with pytest.raises(RewardError, match="does not exist") as info:
        rm.build_reward({"name": "helpful", "type": "hf", "path": str(tmp_path / "nowhere")})
    assert "\n" not in str(info.value)


def test_hf_truncates_long_inputs_and_counts_them(rm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(rm_dir))
    long = " ".join(["the food was great and the staff were friendly"] * 6)
    reward = rm.HFRewardModel(str(rm_dir), max_length=12, device="cpu")
    scores = reward.score(["hi", "hi"], [long, "ok"])
    assert reward.last_truncated == 1
    ids = tok("hi\n" + long)["input_ids"]
    assert len(ids) > 12
    model = reward.model
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids[:12]])).logits[0, 0].item()  # right side is cut
    assert scores[0] == pytest.approx(expected, abs=1e-5)


def test_hf_empty_response_is_defined(rm_dir):
    reward = rm.HFRewardModel(str(rm_dir), device="cpu")
    score = reward.score(["how was it"], [""])[0]
    assert score == pytest.approx(direct_logits(rm_dir, ["how was it\n"])[0][0].item(), abs=1e-5)
    assert np.isfinite(reward.score([""], [""])[0])


def test_hf_tokenizer_without_pad_token_uses_eos(tmp_path):
    path = tiny_reward_model_dir(tmp_path / "rm", seed=3)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tok.pad_token = None
    tok.save_pretrained(str(path))
    reward = rm.HFRewardModel(str(path), batch_size=4, device="cpu")
    assert reward.pad_action == "eos" and reward.tokenizer.pad_token == "</s>"
    assert reward.model.config.pad_token_id == reward.tokenizer.eos_token_id
    expected = [l[0].item() for l in direct_logits(path, [p + "\n" + r for p, r in zip(PROMPTS, RESPONSES)])]
    np.testing.assert_allclose(reward.score(PROMPTS, RESPONSES), expected, atol=1e-5)


def test_hf_chat_template_is_used(tmp_path):
    path = tiny_reward_model_dir(tmp_path / "rm", seed=4, chat_template=True)
    reward = rm.HFRewardModel(str(path), device="cpu")
    assert reward.input_format == "chat"
    tok = with_chat_template(tiny_tokenizer())
    texts = [tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                     tokenize=False) for p, r in zip(PROMPTS, RESPONSES)]
    assert texts[0] == "<s>user: how was the food\nassistant: the food was great</s>"
    expected = [l[0].item() for l in direct_logits(path, texts, add_special_tokens=False)]
    np.testing.assert_allclose(reward.score(PROMPTS, RESPONSES), expected, atol=1e-5)


def test_hf_pair_input_format(rm_dir):
    reward = rm.HFRewardModel(str(rm_dir), input_format="pair", device="cpu")
    tok = reward.tokenizer
    with torch.no_grad():
        expected = [reward.model(input_ids=torch.tensor([tok(p, r)["input_ids"]])).logits[0, 0].item()
                    for p, r in zip(PROMPTS, RESPONSES)]
    np.testing.assert_allclose(reward.score(PROMPTS, RESPONSES), expected, atol=1e-5)


class _ScoreOutputModel(torch.nn.Module):
    """Stands in for an ArmoRM-style custom model whose output carries `score` rather than logits."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids, attention_mask):
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask).logits
        return {"score": 10 * logits[:, 0], "rewards": logits}


def test_hf_output_field_selects_custom_output(rm_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    inner = AutoModelForSequenceClassification.from_pretrained(str(rm_dir))
    plain = rm.HFRewardModel(str(rm_dir), device="cpu").score(PROMPTS, RESPONSES)
    custom = rm.HFRewardModel(model=_ScoreOutputModel(inner), tokenizer=AutoTokenizer.from_pretrained(str(rm_dir)),
                              output="score", device="cpu")
    np.testing.assert_allclose(custom.score(PROMPTS, RESPONSES), 10 * plain, rtol=1e-5, atol=1e-5)
    missing = rm.HFRewardModel(model=_ScoreOutputModel(inner), tokenizer=AutoTokenizer.from_pretrained(str(rm_dir)),
                               output="preference", device="cpu")
    with pytest.raises(RewardError, match="no field 'preference'"):
        missing.score(PROMPTS, RESPONSES)


# ---------------------------------------------------------------- rule-based rewards
def test_vader_compound_hand_checked():
    reward = rm.build_reward({"name": "positive", "type": "vader"})
    scores = reward.score(["q"] * 4, ["the food was great", "the food was terrible", "", "the table"])
    assert scores[0] > 0.5 and scores[1] < -0.4
    assert scores[2] == 0.0 and scores[3] == 0.0
    assert reward.describe()["higher_is_better"] is True


def test_length_counts_characters_and_resists_hacks():
    reward = rm.build_reward({"type": "length"})
    texts = ["hello world", "  hello    world  ", "hello", "", "..... .....", "...... ok fine"]
    assert reward.score(["q"] * 6, texts).tolist() == [11.0, 11.0, 0.0, 0.0, 0.0, 14.0]


def test_conciseness_forms():
    negative = rm.build_reward({"type": "conciseness"})
    inverse = rm.build_reward({"type": "conciseness", "form": "inverse"})
    assert negative.score(["q", "q"], ["ab cd", ""]).tolist() == [-5.0, 0.0]
    np.testing.assert_allclose(inverse.score(["q", "q"], ["ab cd", ""]), [1 / 6, 1.0])


def test_lexical_diversity_hand_checked():
    distinct = rm.build_reward({"type": "diversity"})
    assert distinct.score(["q"] * 3, ["The cat the dog", "", "a b c"]).tolist() == [0.75, 0.0, 1.0]
    mtld = rm.build_reward({"type": "diversity", "method": "mtld"})
    # "a a a a": the TTR hits 0.5 <= 0.72 after every second token -> 2 factors, 4 / 2 = 2 both ways.
    # "a b a b a b": TTR 1, 1, 2/3 (factor), then again 1, 1, 2/3 -> 6 / 2 = 3 (backwards the same).
    assert mtld.score(["q", "q"], ["a a a a", "a b a b a b"]).tolist() == [2.0, 3.0]


def test_readability_flesch_hand_checked():
    reward = rm.build_reward({"type": "readability"})
    # 6 one-syllable words, 1 sentence: 206.835 - 1.015 * 6 - 84.6 * 1 = 116.145
    # two sentences of 3 words each, 6 syllables: 206.835 - 1.015 * 3 - 84.6 = 119.19
    scores = reward.score(["q"] * 3, ["The cat sat on the mat.", "The cat sat. The dog ran!", ""])
    np.testing.assert_allclose(scores, [116.145, 119.19, 0.0])


def test_keyword_presence_modes():
    texts = ["Thank you, please sit", "thanks, pleased", "thank you thank you", ""]
    def run(mode):
        return rm.build_reward({"type": "keywords", "keywords": ["thank you", "please"], "mode": mode}).score(
            ["q"] * 4, texts).tolist()
    assert run("any") == [1.0, 0.0, 1.0, 0.0]
    assert run("fraction") == [1.0, 0.0, 0.5, 0.0]
    assert run("count") == [2.0, 0.0, 2.0, 0.0]


# ---------------------------------------------------------------- callables
@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def exclaim(prompts, responses):
            return [r.count("!") + 0.5 * len(p) for p, r in zip(prompts, responses)]
        def short(prompts, responses):
            return [1.0]
        def nan(prompts, responses):
            return [float("nan")] * len(responses)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "my_rewards", raising=False)  # a module of an earlier test
    yield "my_rewards"


def test_callable_reward_by_dotted_path(user_module):
    reward = rm.build_reward({"name": "bang", "type": "callable", "target": f"{user_module}:exclaim", "batch_size": 2})
    assert reward.score(["ab", "", "abcd"], ["wow!!", "no", "!"]).tolist() == [3.0, 0.0, 3.0]


@pytest.mark.parametrize("target, fragment", [
    ("my_rewards:short", "returned 1 values for 2 responses"),
    ("my_rewards:nan", "non-finite score"),
    ("my_rewards:missing", "has no attribute 'missing'"),
    ("no_such_module_xyz:fn", "cannot import module"),
])
def test_callable_reward_validation(user_module, target, fragment):
    with pytest.raises(RewardError, match=fragment):
        rm.build_reward({"type": "callable", "target": target}).score(["a", "b"], ["x", "y"])


# ---------------------------------------------------------------- normalisation and scoring
def test_zscore_against_reference_file(tmp_path):
    reference = ["hello there friend", "a much longer reference answer here", "ok then"]
    path = tmp_path / "ref.jsonl"
    path.write_text("".join(json.dumps({"prompt": "q", "response": r}) + "\n" for r in reference))
    reward = rm.build_reward({"name": "len_z", "type": "length", "normalize": {"method": "zscore", "reference": str(path)}})
    ref_lengths = np.array([18.0, 35.0, 7.0])
    scores = rm.score_rewards([reward], ["q", "q"], ["good food", "x"])["len_z"]
    np.testing.assert_allclose(scores.raw, [9.0, 0.0])
    np.testing.assert_allclose(scores.values, (np.array([9.0, 0.0]) - ref_lengths.mean()) / ref_lengths.std())
    assert scores.normalization == {"method": "zscore", "mean": pytest.approx(ref_lengths.mean()),
                                    "std": pytest.approx(ref_lengths.std()), "n_reference": 3}


def test_zscore_fitted_on_pipeline_reference_and_raw_recorded():
    z = rm.build_reward({"name": "z", "type": "length", "normalize": "zscore"})
    raw = rm.build_reward({"name": "raw", "type": "length"})
    with pytest.raises(RewardError, match="no reference statistics"):
        rm.score_rewards([z], ["q"], ["good food"])
    rm.fit_normalizers([z, raw], ["q"] * 2, ["ab cd", "abc def gh"])
    out = rm.score_rewards([z, raw], ["q"], ["good food"])
    assert out["z"].values[0] == pytest.approx((9 - 7.5) / 2.5)
    assert out["raw"].normalization["method"] == "raw" and out["raw"].values[0] == 9.0


# ---------------------------------------------------------------- policy metrics
@pytest.fixture(scope="module")
def policies():
    tok = tiny_tokenizer()
    base = tiny_model("llama", seed=5).eval()
    return tok, base, perturbed_copy(base, seed=6, scale=0.2).eval()


def reference_kl(policy, base, tok, prompt, response):
    """Unbatched, unpadded: Σ over response positions of the full-vocabulary KL(p_policy ‖ p_base)."""
    head, tail = tok(prompt)["input_ids"], tok(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        p, q = [torch.log_softmax(m(ids).logits[0].double(), -1) for m in (policy, base)]
    return sum(float((p[t - 1].exp() * (p[t - 1] - q[t - 1])).sum()) for t in range(len(head), ids.shape[1]))


def test_kl_is_zero_for_the_base_policy(policies):
    tok, base, _ = policies
    kl = rm.KLToBase(base_model=base, batch_size=2)
    assert kl.higher_is_better is False and kl.needs_policy
    np.testing.assert_allclose(kl.score(PROMPTS, RESPONSES, policy=PolicyHandle(base, tok)), 0.0, atol=1e-9)


def test_kl_matches_hand_computation(policies):
    tok, base, policy = policies
    kl = rm.build_reward({"name": "kl", "type": "kl", "batch_size": 2}, base_model=base)
    scores = kl.score(PROMPTS, RESPONSES, policy=PolicyHandle(policy, tok))
    expected = [reference_kl(policy, base, tok, p, r) for p, r in zip(PROMPTS, RESPONSES)]
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert scores[3] == 0.0 and np.abs(scores).max() > 1e-3  # empty response: no tokens, KL 0


def test_policy_metric_without_policy_is_refused(policies):
    _, base, _ = policies
    with pytest.raises(RewardError, match="policy=PolicyHandle"):
        rm.KLToBase(base_model=base).score(["a"], ["b"])


def test_perplexity_is_exp_mean_nll_per_text(policies, tmp_path):
    tok, _, policy = policies
    texts = ["the food was great and the staff were friendly", "we waited an hour", "a lovely place"]
    path = tmp_path / "heldout.txt"
    path.write_text("\n".join(texts) + "\n")
    ppl = rm.build_reward({"name": "ppl", "type": "perplexity", "texts": str(path), "batch_size": 2})
    expected = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"]])
            expected.append(math.exp(policy(input_ids=ids, labels=ids).loss.item()))  # mean NLL of the text
    per_text = ppl.score_texts(PolicyHandle(policy, tok))
    np.testing.assert_allclose(per_text, expected, rtol=1e-5)
    assert ppl.text_ids == ["text-00000", "text-00001", "text-00002"] and ppl.per_text
    scores = ppl.score(["q", "q"], ["a", "b"], policy=PolicyHandle(policy, tok))  # per pair: the mean over texts
    np.testing.assert_allclose(scores, np.mean(expected), rtol=1e-5)
    assert ppl.higher_is_better is False


def test_held_out_texts_are_cut_to_the_positions_of_the_models_that_read_them(policies, tmp_path):
    """A text longer than the policy's positions is scored on its first max_position_embeddings tokens (as the
    model can read them), not past them; max_length cuts shorter still."""
    tok, base, policy = policies
    positions = policy.config.max_position_embeddings
    long_text = " ".join(["the food was great and the staff were friendly"] * 200)
    ids = tok(long_text)["input_ids"]
    assert len(ids) > positions
    path = tmp_path / "long.txt"
    path.write_text(long_text + "\n")
    with torch.no_grad():
        head = torch.tensor([ids[:positions]])
        expected = math.exp(policy(input_ids=head, labels=head).loss.item())
    ppl = rm.build_reward({"name": "ppl", "type": "perplexity", "texts": str(path), "max_length": 10 * positions})
    np.testing.assert_allclose(ppl.score_texts(PolicyHandle(policy, tok)), [expected], rtol=1e-5)
    short = rm.build_reward({"name": "ppl", "type": "perplexity", "texts": str(path), "max_length": 5})
    assert [len(s) for s in short.sequences(tok, policy)] == [5]
    kl = rm.build_reward({"name": "ctl", "type": "heldout_kl", "texts": str(path)}, base_model=base)
    assert [len(s) for s in kl.sequences(tok, policy, base)] == [positions]


def test_sampled_kl_averages_to_the_exact_kl_of_the_response_distribution():
    """Enumerating every response of a 5-token vocabulary up to 3 tokens: Σ_y π(y)·estimate(y) = Σ_y π(y)·log
    π(y)/π0(y), the KL of the two response distributions (the chain rule), to rounding."""
    import itertools

    vocab, eos, steps = 5, 2, 3
    base = tiny_model("llama", seed=1, vocab_size=vocab).double().eval()
    policy = perturbed_copy(base, seed=2, scale=0.4).double().eval()
    prompt = [1, 3]

    def next_logprobs(model, seq):
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([seq])).logits[0, -1], -1)

    responses = []
    for length in range(1, steps + 1):
        for tail in itertools.product(range(vocab), repeat=length):
            if eos in tail[:-1] or (length < steps and tail[-1] != eos):
                continue  # a response stops at EOS; one without EOS is cut at `steps` tokens
            responses.append(list(tail))
    log_p, log_q = [], []
    for tail in responses:
        seq, lp, lq = list(prompt), 0.0, 0.0
        for token in tail:
            lp += float(next_logprobs(policy, seq)[token])
            lq += float(next_logprobs(base, seq)[token])
            seq.append(token)
        log_p.append(lp)
        log_q.append(lq)
    probs = np.exp(log_p)
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)  # the enumeration covers every response
    exact = float(np.sum(probs * (np.array(log_p) - np.array(log_q))))
    kl = rm.KLToBase(base_model=base, batch_size=16)
    tok = SimpleNamespace(pad_token_id=0)
    estimates = kl.score_ids([prompt] * len(responses), responses, PolicyHandle(policy, tok))
    assert float(np.sum(probs * estimates)) == pytest.approx(exact, rel=1e-9, abs=1e-12)
    assert exact > 1e-3 and (estimates >= 0).all()
    # The log-ratio of one sample is unbiased too, but not what is computed: it can be negative.
    assert (np.array(log_p) - np.array(log_q)).min() < 0


def test_heldout_kl_is_the_mean_per_token_kl_along_each_text(policies, tmp_path):
    tok, base, policy = policies
    texts = ["the food was great and the staff were friendly", "we waited an hour"]
    path = tmp_path / "control.txt"
    path.write_text("\n".join(texts) + "\n")
    metric = rm.build_reward({"name": "ctl", "type": "heldout_kl", "texts": str(path)}, base_model=base)
    expected = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            p, q = [torch.log_softmax(m(ids).logits[0].double(), -1) for m in (policy, base)]
        expected.append(float((p.exp() * (p - q)).sum(-1)[:-1].mean()))
    first = metric.score_texts(PolicyHandle(policy, tok))
    np.testing.assert_allclose(first, expected, rtol=1e-6)
    np.testing.assert_allclose(metric.score_texts(PolicyHandle(base, tok)), 0.0, atol=1e-12)
    # θ0's side is kept between calls (the same texts at every sweep point): the same numbers, θ0 not run again.
    assert metric._base_cache
    calls = []
    hook = base.register_forward_hook(lambda *args: calls.append(1))
    try:
        assert metric.score_texts(PolicyHandle(policy, tok)).tolist() == first.tolist() and not calls
    finally:
        hook.remove()


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize("config, fragment", [
    ({"type": "sentiment"}, "field 'type': unknown reward type 'sentiment'; use one of vader, length"),
    ({"name": "x"}, "field 'type' is required"),
    ({"type": "hf"}, "field 'path' is required"),
    ({"type": "hf", "path": "x", "mode": "label"}, "mode label needs `label`"),
    ({"type": "hf", "path": "x", "mode": "logit"}, "field 'mode'"),
    ({"type": "vader", "colour": "red"}, "field 'colour' is not a setting"),
    ({"type": "callable", "target": "not a path"}, "field 'target'"),
])
def test_config_errors_are_one_line_naming_the_field(config, fragment):
    with pytest.raises(RewardError, match=fragment) as info:
        rm.build_rewards([config])
    assert "\n" not in str(info.value) and str(info.value).startswith("rewards[0]")


def test_kl_without_base_or_theta0_is_one_line():
    with pytest.raises(RewardError, match="reward 'kl': field 'base' is required for kl unless the pipeline passes θ0"):
        rm.build_rewards([{"type": "kl"}])


def test_duplicate_names_are_refused():
    with pytest.raises(RewardError, match="used twice"):
        rm.build_rewards([{"name": "a", "type": "vader"}, {"name": "a", "type": "length"}])


def test_reward_length_mismatch_is_refused():
    with pytest.raises(RewardError, match="2 prompts but 1 responses"):
        rm.build_reward({"type": "vader"}).score(["a", "b"], ["c"])


def test_score_rewards_mixes_rewards_and_policy_metrics(policies):
    tok, base, policy = policies
    rewards = rm.build_rewards([{"name": "positive", "type": "vader"}, {"name": "kl", "type": "kl"}], base_model=base)
    out = rm.score_rewards(rewards, PROMPTS, RESPONSES, policy=PolicyHandle(policy, tok))
    assert list(out) == ["positive", "kl"]
    assert out["positive"].higher_is_better and not out["kl"].higher_is_better
    np.testing.assert_allclose(out["kl"].raw, rewards[1].score(PROMPTS, RESPONSES, policy=PolicyHandle(policy, tok)))
    np.testing.assert_allclose(out["positive"].values, rewards[0].score(PROMPTS, RESPONSES))


# ---------------------------------------------------------------- the registry of reward types and their identity
def test_a_new_reward_type_is_one_registered_class():
    from typing import Literal

    from pydantic import Field

    from pipelines.config.load import parse_run_config
    from reward_models.config import REWARD_TYPES, RewardSpec, reward_type

    @reward_type
    class ExclamationsSpec(RewardSpec):
        type: Literal["exclamations"]
        weight: float = Field(1.0, gt=0)

        def build(self, base_model=None):
            return rm.CallableReward(lambda p, r: [self.weight * x.count("!") for x in r], self.name)

    try:
        reward = rm.build_reward({"type": "exclamations", "weight": 2})
        assert reward.name == "exclamations" and reward.score(["a", "b"], ["hi!!", "no"]).tolist() == [4.0, 0.0]
        with pytest.raises(RewardError, match=r"rewards\[0\]: field 'weight': Input should be greater than 0"):
            rm.build_rewards([{"type": "exclamations", "weight": -1}])
        # The run config takes it as any other reward type.
        cfg = parse_run_config({"run_name": "r", "base_model": "b", "policies": {"exclamations": "p"},
                                "rewards": [{"type": "exclamations"}], "prompts": {"source": "demo"},
                                "sweep": {"variants": [{"name": "soup"}], "weights": [[1.0]]}}, check_paths=False)
        assert cfg.reward_names == ["exclamations"]
        with pytest.raises(ValueError, match="already registered"):
            reward_type(ExclamationsSpec)
    finally:
        REWARD_TYPES.pop("exclamations")
    with pytest.raises(RewardError, match="unknown reward type 'exclamations'"):
        rm.build_reward({"type": "exclamations"})


def test_a_rewards_identity_follows_the_content_of_its_files(tmp_path, user_module):
    import shutil

    model_dir = tiny_reward_model_dir(tmp_path / "rm", seed=1)
    hf = rm.parse_reward_spec({"type": "hf", "path": str(model_dir)})
    before = rm.reward_identity(hf)
    assert rm.reward_identity(hf) == before  # stable
    shutil.copytree(model_dir, tmp_path / "moved")
    moved = rm.reward_identity(rm.parse_reward_spec({"type": "hf", "path": str(tmp_path / "moved")}))
    assert moved["files"][str(tmp_path / "moved")] == before["files"][str(model_dir)]  # content, not place
    tiny_reward_model_dir(model_dir, seed=2)  # other weights at the same path
    assert rm.reward_identity(hf) != before
    hub = rm.parse_reward_spec({"type": "hf", "path": "org/some-rm"})
    assert rm.reward_identity(hub)["files"] == {}  # a hub model is known by its id

    callable_spec = rm.parse_reward_spec({"type": "callable", "target": f"{user_module}:exclaim"})
    first = rm.reward_identity(callable_spec)
    source = tmp_path / "my_rewards.py"
    source.write_text(source.read_text().replace("0.5 * len(p)", "0.25 * len(p)"))
    assert rm.reward_identity(callable_spec) != first  # edited code is not served old scores
