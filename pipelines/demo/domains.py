"""Text domains of the demo besides restaurant reviews, generated from templates: nothing is downloaded.

θ0 is pretrained on reviews *and* these (weather reports, recipes, directions, shop dialogues, packing lists), so its
layers hold skills that no reward acts on. The rewards only ever see review continuations; held-out texts of these
domains are the control domain of the forgetting study: what a policy, or a merge, loses of what θ0 knew.

    domain_text(rng, domain) -> str                 one text of a domain
    broad_texts(n, seed) -> list[str]               n texts spread evenly over the domains
    unseen_texts(n, seed, seen) -> list[str]        n distinct texts of the domains, none of them in `seen`
"""
from __future__ import annotations

import random

CITIES = ["Lyon", "Porto", "Leeds", "Graz", "Turin", "Ghent", "Bergen", "Malmo", "Cork", "Basel", "Utrecht", "Nantes"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SKIES = ["clear skies", "light rain", "scattered clouds", "a few showers", "thick fog", "sunny spells",
         "heavy rain", "a thunderstorm", "grey and overcast skies", "light snow"]
WINDS = ["Winds are light", "A strong wind blows from the west", "A breeze comes from the sea",
         "Gusts may reach fifty kilometres an hour", "The wind turns to the north in the evening"]

RECIPES = {
    "tomato soup": ["chop two onions and soften them in olive oil", "add a tin of tomatoes and a cup of stock",
                    "simmer for twenty minutes", "blend until smooth"],
    "pancakes": ["whisk two eggs with a cup of milk", "stir in a cup of flour and a pinch of salt",
                 "rest the batter for ten minutes", "cook thin rounds in a hot pan"],
    "lentil stew": ["rinse a cup of lentils", "fry garlic, carrot and celery", "add the lentils and cover with water",
                    "cook for half an hour until soft"],
    "fried rice": ["cook the rice the day before", "scramble two eggs in a wok", "add the rice and frozen peas",
                   "season with soy sauce"],
    "banana bread": ["mash three ripe bananas", "mix in melted butter, sugar and an egg",
                     "fold in flour and baking soda", "bake for an hour"],
}
SERVINGS = ["with crusty bread", "while it is warm", "with a green salad", "the next morning", "with yogurt"]

PLACES = ["station", "library", "market", "museum", "harbour", "town hall", "bakery", "post office", "park"]
STREETS = ["Mill Road", "the river path", "Church Street", "the main avenue", "Bridge Lane", "the old canal"]
LANDMARKS = ["the fountain", "the red bridge", "the pharmacy", "the bus stop", "the clock tower", "the school"]

QUESTIONS = [("Do you have this shirt in blue?", "Yes, we have it in blue in every size except small."),
             ("How much are the apples?", "They are two euros a kilo this week."),
             ("When do you close today?", "We close at six, and at four on Sundays."),
             ("Can I return these shoes?", "Yes, within thirty days if you have the receipt."),
             ("Is there a charger for this phone?", "The chargers are on the second shelf by the door."),
             ("Do you deliver on weekends?", "We deliver on Saturdays but not on Sundays.")]
THANKS = ["Thank you.", "Great, thanks.", "Perfect, I will take it.", "Okay, good to know.", "Thanks for your help."]

TRIPS = {"a beach holiday": ["sunscreen", "a towel", "sandals", "a hat", "a book", "swimwear"],
         "a hiking trip": ["boots", "a map", "a water bottle", "a rain jacket", "snacks", "a first aid kit"],
         "a business trip": ["a laptop", "chargers", "a suit", "notebooks", "a passport", "business cards"],
         "a ski week": ["gloves", "goggles", "a warm jacket", "thermal socks", "lip balm", "a helmet"]}


def weather(rng: random.Random) -> str:
    high = rng.randint(-2, 31)
    return (f"Weather for {rng.choice(CITIES)} on {rng.choice(DAYS)}: {rng.choice(SKIES)} in the morning and "
            f"{rng.choice(SKIES)} later. Highs near {high} degrees, lows around {high - rng.randint(3, 9)}. "
            f"{rng.choice(WINDS)}.")


def recipe(rng: random.Random) -> str:
    dish, steps = rng.choice(list(RECIPES.items()))
    return (f"To make {dish}, first {steps[0]}. Then {steps[1]}. Next, {steps[2]}. Finally, {steps[3]}. "
            f"Serve it {rng.choice(SERVINGS)}.")


def directions(rng: random.Random) -> str:
    start, end = rng.sample(PLACES, 2)
    return (f"To get from the {start} to the {end}, walk along {rng.choice(STREETS)} for {rng.randint(2, 6)} blocks, "
            f"then turn {rng.choice(['left', 'right'])} at {rng.choice(LANDMARKS)}. The {end} is on your "
            f"{rng.choice(['left', 'right'])}, next to {rng.choice(LANDMARKS)}.")


def dialogue(rng: random.Random) -> str:
    question, answer = rng.choice(QUESTIONS)
    return f"Customer: {question} Clerk: {answer} Customer: {rng.choice(THANKS)}"


def packing_list(rng: random.Random) -> str:
    trip, items = rng.choice(list(TRIPS.items()))
    chosen = rng.sample(items, rng.randint(3, 5))
    return f"Packing list for {trip}: {', '.join(chosen[:-1])} and {chosen[-1]}."


DOMAINS = {"weather": weather, "recipes": recipe, "directions": directions, "dialogues": dialogue,
           "lists": packing_list}


def domain_text(rng: random.Random, domain: str) -> str:
    return DOMAINS[domain](rng)


def broad_texts(n: int, seed: int) -> list[str]:
    """`n` texts spread evenly over the domains, in a seeded order."""
    rng = random.Random(f"broad/{seed}")
    names = list(DOMAINS)
    return [domain_text(rng, names[i % len(names)]) for i in range(n)]


def unseen_texts(n: int, seed: int, seen: set[str]) -> list[str]:
    """`n` distinct texts of the domains, none of them in `seen` (the corpus θ0 was pretrained on): the same templates
    and words, new combinations. Domains whose every combination was seen (the short dialogues and recipes) give none;
    the others give their share."""
    rng = random.Random(f"unseen/{seed}")
    names = list(DOMAINS)
    texts: dict[str, None] = {}
    for _ in range(200 * n):
        if len(texts) == n:
            return list(texts)
        text = domain_text(rng, rng.choice(names))
        if text not in seen:
            texts.setdefault(text)
    raise ValueError(f"the demo's other domains have fewer than {n} texts that are not in the pretraining corpus")
