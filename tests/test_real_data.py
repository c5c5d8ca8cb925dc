"""prepare chitchat / prepare fortunes on small files written here (the rules, checked one by one), and the real
package files once; the lexicon and profanity scorers against their packages' own data."""
import json

import pytest

from pipelines.data.__main__ import main


def conversation(*turns):
    return {"messages": [[{"text": m, "sender": str(i % 2)} for m in turn] for i, turn in enumerate(turns)],
            "prompt": "", "ratings": {}}


@pytest.fixture
def chitchat_file(tmp_path):
    data = {f"c{i:03d}": conversation([f"What is your favourite thing number {i}?", "tell me"], ["I like it"])
            for i in range(60)}
    for i in range(20):  # long enough to be held-out texts: 4 turns, 40 words
        data[f"long{i:02d}"] = conversation([f"Tell me about your town number {i} please"],
                                            ["It is small and quiet and green " * 3], ["Do you like it there?"],
                                            ["Yes I do very much, the people are kind " * 2])
    data["short"] = conversation(["Hello?"], ["hi"])
    data["dup"] = conversation(["What is your  favourite thing number 7? tell me"], ["again"])
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    return path


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_chitchat_rules(chitchat_file, tmp_path):
    out = tmp_path / "out"
    assert main(["prepare", "chitchat", "--out", str(out), "--source", str(chitchat_file), "--held-out", "10"]) == 0
    train, evaluation, held = (read(out / f"chitchat_{k}.jsonl") for k in ("train_prompts", "eval_prompts", "held_out"))
    assert len(held) == 10 and all(r["id"].startswith("long") for r in held)  # 4+ turns and 40+ words only
    assert all(r["text"].count("\n") == 3 for r in held)                       # whole conversations, a line per turn
    prompts = [r["prompt"] for r in train + evaluation]
    assert len(prompts) == len(set(" ".join(p.split()) for p in prompts))  # no duplicate anywhere
    assert "Hello?" not in prompts                                            # a greeting alone is no prompt
    held_openers = {r["text"].splitlines()[0] for r in held}
    assert not held_openers & set(prompts)
    assert not {r["id"] for r in train} & {r["id"] for r in evaluation}
    assert train[0]["prompt"].endswith("? tell me")                           # the first turn's messages joined
    assert 0.2 < len(evaluation) / len(prompts) < 0.4


def test_chitchat_split_is_stable_under_file_order(chitchat_file, tmp_path):
    data = json.loads(chitchat_file.read_text())
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps(dict(reversed(list(data.items())))))
    for name, source in (("a", chitchat_file), ("b", reordered)):
        assert main(["prepare", "chitchat", "--out", str(tmp_path / name), "--source", str(source),
                     "--held-out", "10"]) == 0
    for kind in ("train_prompts", "eval_prompts", "held_out"):
        assert read(tmp_path / "a" / f"chitchat_{kind}.jsonl") == read(tmp_path / "b" / f"chitchat_{kind}.jsonl")


def test_chitchat_bad_source_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["prepare", "chitchat", "--out", str(tmp_path / "o"), "--source", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "bad.json" in err[0]
    assert not (tmp_path / "o").exists()


def test_chitchat_package_file(tmp_path):
    out = tmp_path / "out"
    assert main(["prepare", "chitchat", "--out", str(out)]) == 0
    record = json.loads((out / "chitchat_prepare.json").read_text())
    assert record["read"]["conversations"] == 7168 and record["licence"] == "MIT"
    assert record["rows"]["held_out"] == 500 and record["rows"]["eval_prompts"] > 500


def test_fortunes(tmp_path, capsys):
    source = tmp_path / "f"
    source.mkdir()
    for name in ("fortunes", "literature", "riddles"):
        (source / name).write_text(f"{name} one\n\t-- someone\n%\n{name} two\n%\n%\nfortunes one\n\t-- someone\n")
    assert main(["prepare", "fortunes", "--out", str(tmp_path / "o"), "--source", str(source), "--held-out", "4"]) == 0
    held = read(tmp_path / "o" / "fortunes_held_out.jsonl")
    assert len(held) == 4 and all(r["text"].strip() for r in held)
    assert len({r["text"] for r in held}) == 4
    assert main(["prepare", "fortunes", "--out", str(tmp_path / "p"), "--source", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fortunes-min" in err[0]


def test_lexicon_count_against_vader_lexicon_file():
    from pathlib import Path

    import vaderSentiment

    from reward_models.rules import LexiconCount

    # VADER's lexicon file read directly: "word<TAB>mean valence<TAB>..."
    table = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    valence = {line.split("\t")[0]: float(line.split("\t")[1]) for line in table.read_text().splitlines() if line}
    text = "I love it, GREAT fun! Love love. bad, sad, okay 42"
    expected = sum(1 for w in ["i", "love", "it", "great", "fun", "love", "love", "bad", "sad", "okay"]
                   if valence.get(w, 0) >= 1.0)
    assert LexiconCount("lexicon").score([""], [text])[0] == expected == 5
    assert LexiconCount("lexicon").score([""], [""])[0] == 0


def test_profanity_classifier_is_a_learned_metric():
    from reward_models.config import REWARD_TYPES

    reward = REWARD_TYPES["profanity"](type="profanity").build()
    scores = reward.score(["a", "b"], ["Thank you, have a lovely day.", "shut up you stupid f***ing idiot"])
    assert reward.higher_is_better is False
    assert scores[0] < 0.2 < 0.8 < scores[1]
