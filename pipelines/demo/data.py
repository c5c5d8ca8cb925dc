"""The embedded demo's data, generated from templates: nothing is downloaded.

Short restaurant reviews. A prompt is the review's opening sentence, which names what the review is about
("We had dinner at Casa Rosa with my parents and ordered the curry."); the response is what follows: two to six
sentences drawn from positive, negative and neutral pools, about the dish the prompt names ("The curry was
delicious."), so that a continuation depends on its prompt. The pools are built so the demo's two rewards conflict for a structural reason:
positive sentences are short ("Great food."), complaints are long-winded, neutral remarks sit between.
A policy that maximises character length learns to complain; one that maximises VADER sentiment learns
short praise. Their soups then trace a real trade-off.

The partition of the text space (the one place that decides what can leak): every opening belongs to exactly one
part — train, validation or test — by a hash of the opening alone (PARTITION_SEED), whatever the run's seed. A seed
only reorders and draws *within* a part: which training openings θ0's corpus uses and which held-out prompts a run
evaluates on. So no validation or test opening ever appears in a text θ0 is pretrained on (demo_corpus) or a policy
is trained on (the train part's prompts and their continuations), for any seed (tests/test_demo_leak.py). Seed 0's
order within each part is the partition's own order.

Everything is a pure function of the seed:

    demo_prompts("train" | "validation" | "test", n=None, seed=0) -> list[Prompt]   disjoint parts, seed-ordered
    demo_corpus(n, seed=0, review_share=1.0) -> list[str]   SFT corpus: reviews (train-split openings) and, with
                                                 review_share < 1, texts of the other domains (domains.py)
    demo_reviews(prompts, seed) -> list[str]     one review continuing each prompt
    heldout_reviews(n), control_texts(n)         held-out texts of the reward domain and of the control domain
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import random
from typing import Literal

from ..prompt_record import Prompt
from .domains import broad_texts, unseen_texts

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# Held-out sizes are fixed so that asking for more training prompts never moves a prompt between splits.
N_VALIDATION = 150
N_TEST = 300

RESTAURANTS = [
    "Casa Rosa", "The Olive Tree", "Blue Lantern", "Golden Wok", "Luigi's", "The Corner Bistro", "Sakura House",
    "Green Garden", "The Red Door", "Harbor Grill", "Maple Kitchen", "Little Saigon", "El Patio", "The Copper Pot",
    "Bella Vista", "Spice Route", "The Old Mill", "Nori Bar", "Sunset Diner", "The Lemon Leaf", "Cafe Paris",
    "Stone Oven", "Tandoor Palace", "The Fig and Fork",
]
MEALS = ["dinner", "lunch", "brunch", "breakfast", "a late supper", "a quick bite"]
COMPANY = ["with my parents", "with friends", "with my partner", "with a colleague", "alone", "with the kids"]
OPENINGS = [
    "We had {meal} at {place} {company} and ordered the {dish}.",
    "I went to {place} for {meal} {company} and had the {dish}.",
    "Last week we tried {place} for {meal} {company}, mostly for the {dish}.",
    "We stopped at {place} for {meal} {company} and shared the {dish}.",
    "My first visit to {place} was for {meal} {company}, and I chose the {dish}.",
]
DISHES = ["pasta", "soup", "curry", "burger", "fish", "salad", "pizza", "noodles", "steak", "dessert",
          "bread", "tacos", "dumplings", "risotto"]

# Short and clearly positive (VADER compound > 0).
POSITIVE = [
    "Great food.", "The {dish} was delicious.", "Lovely staff.", "We loved it.", "Excellent {dish}.",
    "Friendly service.", "Highly recommended.", "The {dish} was wonderful.", "A great place.", "Really good value.",
    "Amazing {dish}.", "Nice and cozy.", "The staff were so kind.", "Perfect evening.", "Best {dish} in town.",
]
# Long complaints with negative words (VADER compound < 0).
NEGATIVE = [
    "The {dish} arrived cold and tasteless after we had waited almost forty minutes, and nobody apologized for "
    "the terrible delay.",
    "Our waiter was rude and careless, he forgot half of the order and then argued with us when we asked about it.",
    "The room was dirty and noisy, the tables were sticky, and the smell from the kitchen was really unpleasant.",
    "I was disappointed by the {dish}, which was bland, overcooked and far too expensive for such a small portion.",
    "We had to send the {dish} back twice because it was burnt, and the manager was rude about it, a horrible end "
    "to the night.",
    "The booking was lost, we waited at the door for half an hour, and the staff seemed annoyed that we complained.",
    "Sadly the {dish} was greasy and stale, and my friend felt sick for the rest of the evening, which was awful.",
    "The bill was wrong, the card machine failed, and the whole experience left us angry and frustrated.",
]
# Medium length, factual, no sentiment words (VADER compound ≈ 0).
NEUTRAL = [
    "The menu has a few {dish} options and the prices are about average for the area.",
    "We ordered the {dish} and a pot of tea.",
    "The restaurant is on a side street near the station.",
    "They open at noon and close at ten on weekdays.",
    "Most tables were taken by families when we arrived.",
    "The {dish} comes with rice or bread on the side.",
    "Parking is available behind the building.",
    "The kitchen is open so you can see the cooks at work.",
]
MOODS = {  # probabilities of (positive, negative, neutral) sentences given the review's overall mood
    "positive": (0.7, 0.1, 0.2),
    "negative": (0.1, 0.7, 0.2),
    "mixed": (0.4, 0.35, 0.25),
}


@functools.lru_cache(maxsize=1)
def _all_openings() -> tuple[str, ...]:
    return tuple(template.format(meal=meal, place=place, company=company, dish=dish)
                 for template, place, meal, company, dish in
                 itertools.product(OPENINGS, RESTAURANTS, MEALS, COMPANY, DISHES))


def dish_of(opening: str) -> str:
    """The dish an opening names (the last word of its sentence): what the review's sentences are about."""
    word = opening.rstrip(".").split()[-1]
    if word not in DISHES:
        raise ValueError(f"the demo opening {opening!r} names no dish")
    return word


# The partition of the openings is this seed's ranking, for every run seed (see the module's docstring).
PARTITION_SEED = 0


def _split_rank(seed: int, text: str) -> str:
    # Rank by a hash of (seed, text): where an opening lands does not depend on list order.
    return hashlib.sha256(f"demo/{seed}/{text}".encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def _partition() -> dict[Split, list[str]]:
    ranked = sorted(_all_openings(), key=lambda text: _split_rank(PARTITION_SEED, text))
    return {"validation": ranked[:N_VALIDATION], "test": ranked[N_VALIDATION:N_VALIDATION + N_TEST],
            "train": ranked[N_VALIDATION + N_TEST:]}


def prompt_splits(seed: int = 0) -> dict[Split, list[str]]:
    """All openings in the fixed disjoint parts train / validation / test (fixed sizes for the held-out ones), each
    part in the order of `seed`: the seed reorders within a part, never moves an opening between parts."""
    return {split: sorted(texts, key=lambda text: _split_rank(seed, text)) for split, texts in _partition().items()}


def demo_prompts(split: Split, n: int | None = None, seed: int = 0) -> list[Prompt]:
    """The first `n` prompts of a split (all when None), with stable ids like 'demo-validation-0007'."""
    if split not in SPLITS:
        raise ValueError(f"unknown demo split {split!r}; use one of {', '.join(SPLITS)}")
    texts = prompt_splits(seed)[split]
    if n is not None:
        if n > len(texts):
            raise ValueError(f"the demo's {split} split has {len(texts)} prompts; asked for {n}")
        texts = texts[:n]
    return [Prompt(f"demo-{split}-{i:04d}", text) for i, text in enumerate(texts)]


def _sentence(rng: random.Random, mood: str, dish: str) -> str:
    pool = rng.choices([POSITIVE, NEGATIVE, NEUTRAL], weights=MOODS[mood])[0]
    return rng.choice(pool).format(dish=dish)


def continuation(rng: random.Random, opening: str) -> str:
    """Two to six sentences after an opening, about the dish it names, with a leading space (prompts end on a token
    boundary)."""
    dish = dish_of(opening)
    mood = rng.choice(list(MOODS))
    count = rng.randint(2, 6)
    return "".join(" " + _sentence(rng, mood, dish) for _ in range(count))


def demo_reviews(prompts: list[str], seed: int = 0) -> list[str]:
    """One full review (prompt + continuation) per prompt."""
    rng = random.Random(f"reviews/{seed}")
    return [prompt + continuation(rng, prompt) for prompt in prompts]


def demo_corpus(n: int, seed: int = 0, review_share: float = 1.0) -> list[str]:
    """`n` texts for SFT: reviews opening only with train-split prompts (held-out openings stay unseen) and, for
    `review_share` < 1, texts of the other demo domains (domains.py) in a seeded order."""
    rng = random.Random(f"corpus/{seed}")
    openings = prompt_splits(seed)["train"]
    reviews = round(n * review_share)
    chosen = [rng.choice(openings) for _ in range(reviews)]
    texts = [opening + continuation(rng, opening) for opening in chosen] + broad_texts(n - reviews, seed)
    rng.shuffle(texts)
    return texts


def heldout_reviews(n: int = 64) -> list[str]:
    """Reviews of test-split openings, for the reward domain's perplexity: one text each, the opening once."""
    prompts = demo_prompts("test", n, seed=0)
    return demo_reviews([p.prompt for p in prompts], seed=777)


def control_texts(n: int = 64, pretraining: set[str] = frozenset()) -> list[str]:
    """Texts of the other domains, for the control domain of the forgetting study: no reward acts on them, and none is
    one of `pretraining` (θ0's SFT texts): the templates and words θ0 learned, in combinations it never saw."""
    return unseen_texts(n, seed=0, seen=set(pretraining))
