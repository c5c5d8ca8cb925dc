"""The demo's generated data: deterministic, disjoint splits, and rewards that conflict by construction."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.demo.data import NEGATIVE, POSITIVE, demo_corpus, demo_prompts, demo_reviews, prompt_splits
from reward_models import CharLength, VaderSentiment


def test_splits_are_disjoint_deterministic_and_seeded():
    splits = prompt_splits(0)
    sets = {name: set(texts) for name, texts in splits.items()}
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    assert prompt_splits(0) == splits and prompt_splits(1)["test"] != splits["test"]
    assert [p.prompt for p in demo_prompts("validation", 5)] == splits["validation"][:5]
    assert demo_prompts("test", 3)[2].prompt_id == "demo-test-0002"
    with pytest.raises(ValueError, match="has 150 prompts"):
        demo_prompts("validation", 151)


def test_corpus_opens_only_with_training_prompts():
    train = set(prompt_splits(0)["train"])
    for review in demo_corpus(200):
        opening = review.split(".")[0] + "."
        assert opening in train
    assert demo_corpus(5, seed=3) == demo_corpus(5, seed=3)
    openings = [p.prompt for p in demo_prompts("train", 50)]
    reviews = demo_reviews(openings)
    assert all(r.startswith(p) for r, p in zip(reviews, openings))


def test_a_continuation_is_about_the_dish_its_prompt_names():
    from pipelines.demo.data import DISHES, dish_of

    for prompt in (p.prompt for p in demo_prompts("test", 40)):
        dish = dish_of(prompt)
        rest = demo_reviews([prompt])[0][len(prompt):]
        named = {d for d in DISHES if f" {d} " in f" {rest.replace('.', ' ')} "}
        assert named <= {dish}  # other dishes never appear: the prompt decides what the text is about
    with_dish = [r for r in demo_reviews([p.prompt for p in demo_prompts("test", 100)])
                 if dish_of(r.split(".")[0] + ".") in r.split(".", 1)[1]]
    assert len(with_dish) > 50


def test_positive_sentences_are_short_and_complaints_long():
    vader, length = VaderSentiment(), CharLength()
    pos = [s.format(dish="soup") for s in POSITIVE]
    neg = [s.format(dish="soup") for s in NEGATIVE]
    assert (vader.score(pos, pos) > 0).all() and (vader.score(neg, neg) < 0).all()
    assert length.score(pos, pos).max() < length.score(neg, neg).min()  # the conflict the demo relies on
    reviews = demo_corpus(300)
    assert np.std(vader.score(reviews, reviews)) > 0.3  # θ0's data spans both ends of the trade-off


def test_held_out_texts_of_the_demo():
    from pipelines.demo.data import control_texts, demo_corpus, demo_prompts, heldout_reviews

    prompts = [p.prompt for p in demo_prompts("test", 64)]
    reviews = heldout_reviews(64)
    # Each held-out review starts with its opening, once (not the opening repeated before the review).
    assert all(r.startswith(p) and r.count(p) == 1 for p, r in zip(prompts, reviews))
    corpus = set(demo_corpus(8000, seed=1, review_share=0.4))
    controls = control_texts(64, pretraining=corpus)
    assert len(set(controls)) == 64 and not set(controls) & corpus  # distinct, and none θ0 was pretrained on
    assert not any(text.startswith(tuple(prompts)) for text in controls)  # the control domain holds no reviews
    assert {text.split()[0] for text in controls} >= {"Weather", "Packing"}  # several domains
    corpus = demo_corpus(1000, seed=0, review_share=0.4)
    share = sum(text.startswith(("We ", "I went", "Last week", "My first")) for text in corpus) / len(corpus)
    assert share == pytest.approx(0.4, abs=0.01) and "Weather for" in " ".join(corpus)
