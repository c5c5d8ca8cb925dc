"""The project's PPO against trl 1.12's PPOTrainer as a peer: same θ0, prompts, reward and hyperparameters, several
seeds each; the held-out reward gain and KL(π ‖ π0) of the trained policies compared, the difference with a Welch
t-interval beside the spread across seeds. Not part of the tests (it needs a second virtual environment).

trl 1.13 removed PPO and trl 1.12 cannot be installed beside the project's own trl, so the peer runs in its own
virtual environment, created once (torch first, from the CPU wheel; then trl 1.12 with the transformers it accepts):

    python3.11 -m venv /work/ppo-peer-venv
    /work/ppo-peer-venv/bin/pip install torch==2.13.0
    /work/ppo-peer-venv/bin/pip install "trl==1.12.*"

Then, from the repository root with the project's environment:

    HF_HUB_OFFLINE=1 PYTHONPATH=$PWD .venv/bin/python benchmarks/ppo_peer.py \\
        --peer-python /work/ppo-peer-venv/bin/python --seeds 0,1,2,3,4,5,6,7 --out /tmp/ppo_peer --write-results

`--write-results` keeps the figures in benchmarks/ppo_peer.json and writes them as part 7 of benchmarks/RESULTS.md
(benchmarks/run_all.py renders that part from the same file when it rewrites RESULTS.md).

The driver builds θ0 (a small random Llama with a BPE tokenizer trained on the demo corpus: both sides read the same
files), the prompts (the demo's, token ids written once so both sides start from the same ids) and runs each side as
its own process (`--side ours|peer`, one torch thread each). The reward is a rule both sides compute the same way:
the share of a response's letters in a–m (a random θ0 sits near one half and every token moves it). Each trained
policy is then evaluated by the project's evaluation on held-out prompts (4 samples per prompt at temperature 1; KL
as the exact per-token sum along the samples) with the same sampling seeds, so the two sides are measured alike.

Settings both sides share (trl's names): 16 prompts per rollout, `STEPS` rollouts, response_length 16, EOS ends a
response, temperature 1, 4 PPO epochs, 1 minibatch, kl_coef 0.05 fixed, k1 estimator, cliprange 0.2,
cliprange_value 0.2, vf_coef 0.1, γ 1, λ 0.95, no reward whitening, AdamW at a linear schedule from `LR`. trl 1.12's
loop does not clip gradients, so the project's side runs with max_grad_norm 1e9 here.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STEPS, BATCH, RESPONSE, LR = 24, 16, 16, 3e-3
SHARED = dict(kl_coef=0.05, kl_estimator="k1", num_ppo_epochs=4, num_mini_batches=1, cliprange=0.2, cliprange_value=0.2,
              vf_coef=0.1, gamma=1.0, lam=0.95, whiten_rewards=False, response_length=RESPONSE, temperature=1.0,
              learning_rate=LR, max_steps=STEPS, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
              lr_scheduler_type="linear", report_to=[], logging_steps=1, save_strategy="no", use_cpu=True,
              disable_tqdm=True)


def letters(prompts, responses):
    """Share of the response's letters in a–m (0.5 for a response without letters)."""
    out = []
    for response in responses:
        kept = [c for c in response.lower() if "a" <= c <= "z"]
        out.append(sum(c <= "m" for c in kept) / len(kept) if kept else 0.5)
    return out


# -- the peer: trl 1.12's PPOTrainer (runs in the peer's environment: torch, transformers, trl only) ----------------

def run_peer(base: Path, prompts_file: Path, seed: int, out: Path) -> None:
    from types import SimpleNamespace

    import torch
    from datasets import Dataset
    from torch import nn
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding)
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    torch.set_num_threads(1)
    data = json.loads(prompts_file.read_text())
    tokenizer = AutoTokenizer.from_pretrained(base, padding_side="left")
    width = max(len(ids) for ids in data["train_ids"])

    class Scores(nn.Module):  # trl reads a reward model as backbone + `score` at the last real token
        def forward(self, input_ids, attention_mask, **_):
            responses = [tokenizer.decode([t for t, keep in zip(ids[width:], mask[width:]) if keep],
                                          skip_special_tokens=True)
                         for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist())]
            scores = torch.tensor(letters(None, responses), dtype=torch.float32)
            return SimpleNamespace(hidden_states=(scores[:, None, None].expand(-1, input_ids.shape[1], 1),))

    class RewardModel(nn.Module):
        base_model_prefix = "backbone"

        def __init__(self):
            super().__init__()
            self.backbone, self.score = Scores(), nn.Identity()

    value_model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    args = PPOConfig(output_dir=str(out / "trainer"), seed=seed, stop_token="eos", total_episodes=STEPS * BATCH,
                     local_rollout_forward_batch_size=BATCH, **SHARED)
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=AutoModelForCausalLM.from_pretrained(base),
                         ref_model=AutoModelForCausalLM.from_pretrained(base), reward_model=RewardModel(),
                         value_model=value_model, train_dataset=Dataset.from_dict({"input_ids": data["train_ids"]}),
                         data_collator=DataCollatorWithPadding(tokenizer, padding="max_length", max_length=width))
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    trainer.accelerator.unwrap_model(trainer.model).policy.save_pretrained(str(out / "policy"))
    tokenizer.save_pretrained(str(out / "policy"))
    (out / "train.json").write_text(json.dumps({"seconds": seconds}))


# -- the project's PPO ----------------------------------------------------------------------------------------------

def run_ours(base: Path, prompts_file: Path, seed: int, out: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from lines.models import load_causal_lm
    from pipelines.training import ppo_loop
    from pipelines.training.checkpoints import load_tokenizer
    from pipelines.training.ppo_config import PPOConfig
    from reward_models import build_rewards

    torch.set_num_threads(1)
    data = json.loads(prompts_file.read_text())
    tokenizer = load_tokenizer(base)
    reward = build_rewards([{"name": "letters", "type": "callable", "target": "ppo_peer:letters"}])[0]
    value_model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    args = PPOConfig(output_dir=str(out / "trainer"), seed=seed, max_grad_norm=1e9, **SHARED)
    start = time.time()
    result = ppo_loop.train(args, load_causal_lm(base), value_model, load_causal_lm(base).requires_grad_(False),
                            tokenizer, data["train"], data["train_ids"], reward)
    seconds = time.time() - start
    result.accelerator.unwrap_model(result.model).policy.save_pretrained(str(out / "policy"))
    tokenizer.save_pretrained(str(out / "policy"))
    (out / "train.json").write_text(json.dumps({"seconds": seconds}))


# -- the driver -----------------------------------------------------------------------------------------------------

def build_base(out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipelines.demo.data import demo_corpus
    from pipelines.training.tokenizer_train import train_bpe_tokenizer

    path = out / "base"
    tokenizer = train_bpe_tokenizer(demo_corpus(400, 0), vocab_size=400, model_max_length=128)
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def write_prompts(base: Path, out: Path) -> Path:
    from pipelines.demo.data import demo_prompts
    from pipelines.training.checkpoints import load_tokenizer
    from reward_models.text_format import policy_prompt_ids

    tokenizer = load_tokenizer(base)
    train = [p.prompt for p in demo_prompts("train", 64)]
    path = out / "prompts.json"
    path.write_text(json.dumps({"train": train, "train_ids": [policy_prompt_ids(tokenizer, p) for p in train]}))
    return path


def evaluate(policy: Path, base: Path, work: Path) -> dict:
    from lines.models import load_causal_lm
    from pipelines.config.training import EvaluationSpec
    from pipelines.demo.data import demo_prompts
    from pipelines.training.checkpoints import load_tokenizer
    from pipelines.training.evaluation import evaluate_model
    from reward_models import build_rewards

    reward = build_rewards([{"name": "letters", "type": "callable", "target": "ppo_peer:letters"}])[0]
    spec = EvaluationSpec(samples_per_prompt=4, max_new_tokens=RESPONSE, temperature=1.0, batch_size=64, seed=1234)
    result = evaluate_model(load_causal_lm(policy), load_tokenizer(base), demo_prompts("validation", 64), spec,
                            {"letters": reward}, work, policy.parent.name, base_model=load_causal_lm(base))
    return {key: result["summary"][key]["mean"] for key in ("letters", "kl_to_base")}


def t_quantile(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def welch(a: list[float], b: list[float]) -> dict:
    """Mean difference a − b with a 95% Welch t-interval over seeds, and each side's standard deviation."""
    va, vb = statistics.variance(a), statistics.variance(b)
    se = math.sqrt(va / len(a) + vb / len(b))
    df = se ** 4 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    diff = statistics.mean(a) - statistics.mean(b)
    half = t_quantile(df) * se
    return {"difference": diff, "low": diff - half, "high": diff + half, "sd_ours": math.sqrt(va),
            "sd_peer": math.sqrt(vb), "mean_ours": statistics.mean(a), "mean_peer": statistics.mean(b)}


def machine_load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


RESULTS_JSON = Path(__file__).resolve().parent / "ppo_peer.json"


def section(summary: dict) -> list[str]:
    """Part 7 of benchmarks/RESULTS.md from the benchmark's summary."""
    gain, kl, secs = summary["gain"], summary["kl"], summary["train_seconds"]
    ours = [r for r in summary["rows"] if r["side"] == "ours"]
    peer = [r for r in summary["rows"] if r["side"] == "peer"]

    def row(name, s, fmt):
        return (f"| {name} | {s['mean_ours']:{fmt}} (sd {s['sd_ours']:{fmt}}) | {s['mean_peer']:{fmt}} "
                f"(sd {s['sd_peer']:{fmt}}) | {s['difference']:+{fmt}} | {s['low']:+{fmt}} … {s['high']:+{fmt}} |")

    settings = summary["settings"]
    return [
        "## 7. PPO: the project's own vs trl 1.12's PPOTrainer (`ppo_peer.py`)", "",
        f"Measured {summary['date']}; load (1/5/15 min) {summary['load_start']} at the start, {summary['load_end']} at "
        "the end (other jobs shared the 2 cores). Command: `HF_HUB_OFFLINE=1 PYTHONPATH=$PWD .venv/bin/python "
        f"benchmarks/ppo_peer.py --seeds {','.join(str(r['seed']) for r in ours)} --write-results` (the peer in its "
        f"own virtual environment: trl {summary['peer_versions']}; the script says how to create it).", "",
        f"Same θ0 (a random 2-block Llama, hidden 64, BPE of {summary['vocab']} tokens), the same 64 training prompts "
        f"and token ids, the same reward (share of a response's letters in a–m) and settings: {settings['steps']} "
        f"rollouts of {settings['batch']} responses of up to {settings['response_length']} tokens, "
        f"{settings['num_ppo_epochs']} PPO epochs, β {settings['kl_coef']} fixed, learning rate "
        f"{settings['learning_rate']:g}, linear schedule; {len(ours)} seeds each, one process and one torch thread "
        "per run, the two sides interleaved seed by seed. Each policy is evaluated alike by the project's evaluation "
        "on 64 held-out prompts × 4 samples at temperature 1 (the same sampling seeds): reward gain over θ0 "
        f"(θ0: {summary['theta0']['letters']:.4f}) and KL(π ‖ π0) in nats per response (exact per-token sum along "
        "the samples). Difference: ours − peer, with a 95% Welch t-interval over seeds; sd: the spread across seeds.",
        "",
        "| measure | ours: mean over seeds | trl 1.12: mean over seeds | difference | 95% interval |",
        "|---|---|---|---|---|",
        row("held-out reward gain", gain, ".4f"),
        row("KL(π ‖ π0), nats per response", kl, ".3f"),
        row("training time, s", secs, ".1f"),
        "",
        "Per seed (gain, KL): ours " + "; ".join(f"{r['seed']}: {r['gain']:+.4f}, {r['kl']:.2f}" for r in ours)
        + "; trl " + "; ".join(f"{r['seed']}: {r['gain']:+.4f}, {r['kl']:.2f}" for r in peer) + ".", ""]


def write_results(summary: dict) -> None:
    RESULTS_JSON.write_text(json.dumps(summary, indent=1))
    results = RESULTS_JSON.parent / "RESULTS.md"
    text = results.read_text()
    start = text.find("## 7. ")
    block = "\n".join(section(summary))
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + block + ("\n" + text[end + 1:] if end >= 0 else "")
    results.write_text(text)
    print(f"wrote {results} (part 7) and {RESULTS_JSON}")


def drive(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = build_base(out)
    prompts = write_prompts(base, out)
    here = Path(__file__).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1]), str(here.parent)]),
           "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "OMP_NUM_THREADS": "1"}
    load_start = machine_load()
    theta0 = evaluate(base, base, out / "eval-base")
    rows = []
    for seed in args.seeds:
        for side, python in (("ours", sys.executable), ("peer", args.peer_python)):
            run_dir = out / f"{side}-{seed}"
            subprocess.run([python, str(here), "--side", side, "--base", str(base), "--prompts", str(prompts),
                            "--seed", str(seed), "--out", str(run_dir)], check=True, env=env)
            scores = evaluate(run_dir / "policy", base, run_dir / "eval")
            seconds = json.loads((run_dir / "train.json").read_text())["seconds"]
            rows.append({"side": side, "seed": seed, "gain": scores["letters"] - theta0["letters"],
                         "kl": scores["kl_to_base"], "train_seconds": seconds})
            print(json.dumps(rows[-1]), flush=True)
    from pipelines.training.checkpoints import load_tokenizer

    versions = subprocess.run([args.peer_python, "-c", "import trl, transformers, torch; "
                               "print(f'{trl.__version__}, transformers {transformers.__version__}, "
                               "torch {torch.__version__}')"], capture_output=True, text=True, env=env).stdout.strip()
    summary = {"theta0": theta0, "rows": rows, "settings": {"steps": STEPS, "batch": BATCH, **SHARED},
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": load_start,
               "load_end": machine_load(), "peer_versions": versions, "vocab": len(load_tokenizer(base))}
    for metric in ("gain", "kl", "train_seconds"):
        summary[metric] = welch([r[metric] for r in rows if r["side"] == "ours"],
                                [r[metric] for r in rows if r["side"] == "peer"])
    (out / "ppo_peer.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("theta0", "gain", "kl", "train_seconds")}, indent=1))
    if args.write_results:
        write_results(summary)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["ours", "peer"])
    parser.add_argument("--base")
    parser.add_argument("--prompts")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", default="/tmp/ppo_peer")
    parser.add_argument("--peer-python", default="/work/ppo-peer-venv/bin/python")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--write-results", action="store_true",
                        help="keep the figures in benchmarks/ppo_peer.json and RESULTS.md's part 7")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite RESULTS.md's part 7 from benchmarks/ppo_peer.json")
    args = parser.parse_args(argv)
    if args.render:
        write_results(json.loads(RESULTS_JSON.read_text()))
    elif args.side is None:
        drive(args)
    else:
        (run_peer if args.side == "peer" else run_ours)(Path(args.base), Path(args.prompts), args.seed, Path(args.out))


if __name__ == "__main__":
    main()
