"""The embedded demo's data, generated from templates (nothing is downloaded): restaurant reviews (data.py), whose
openings are the prompts and whose continuations the rewards act on, and texts of other domains (domains.py) that θ0
also learns and no reward touches."""
