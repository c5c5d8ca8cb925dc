"""The CUDA paths without vLLM, in one script for one short run on a GPU machine: `gpu_check.py --no-vllm`.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py --no-vllm [--out benchmarks/work/gpu_check_no_vllm.json]
        [--demo-run runs/demo]    # θ0 and policies of a finished `make demo`, for the parity and sweep checks

Models are built here, nothing downloaded. Checks, each PASS/FAIL, with timings, written to a JSON report after every
step (a run cut short keeps what it measured):
  1. `lines merge --device cuda` equals the CPU merge (every element within one spacing of its dtype), for linear
     + LiNeS (α auto), TIES + LiNeS and DARE-TIES on fp32 checkpoints; seconds of both on a ~1B bf16 Llama;
  2. the transformers backend on CUDA: greedy text of θ0 in fp32 equal to the CPU's; the in-place dense swap of the
     ~1B Llama (seconds per swap, merge on the GPU and on the CPU); generated tokens/s at batch 64 in bf16;
  3. a bf16 LoRA DPO run and a short LoRA PPO run of a model shaped like SmolLM2-135M-Instruct (30 blocks, hidden
     576, vocabulary 49,152, tied embeddings; random weights) through the training stage, each with its CUDA memory
     peak beside `--check`'s estimate for the same config;
  4. the demo's sweep (`backend: transformers`) on the GPU from the demo's θ0 and policies (`demo-sweep`); the same
     command with the GPU hidden (`demo-sweep-cpu`, which also runs on a machine without a GPU) is its CPU reference.
Exit 0 when every check passes, 1 when one fails, 2 (one `error:` line) without CUDA.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402  (after the environment above)
from machine_load import LoadProbe  # noqa: E402
from train_helpers import state_dict_of  # noqa: E402

SMALL = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
             num_key_value_heads=4, max_position_embeddings=512, vocab_size=320)
ONE_B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=20, num_attention_heads=16,
             num_key_value_heads=16, max_position_embeddings=512, vocab_size=32000)
# SmolLM2-135M-Instruct's shape (its config as the GGUF package carries it; see shared notes on real models).
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, max_position_embeddings=2048, vocab_size=49152, tie_word_embeddings=True,
               rms_norm_eps=1e-5, rope_theta=100000.0)
# A dry run of this script's own code on a machine without a GPU (GPU_CHECK_DRY=1): every "GPU" step on the CPU, the
# ~1B and 30-block models shrunk. Its figures mean nothing; it only shows the script runs through before device time
# is spent on it.
DRY = os.environ.get("GPU_CHECK_DRY") == "1"
GPU = "cpu" if DRY else "cuda"
if DRY:
    ONE_B = {**ONE_B, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4}
    SMOLLM2 = {**SMOLLM2, "num_hidden_layers": 2}
    for _name in ("synchronize", "reset_peak_memory_stats"):
        setattr(torch.cuda, _name, lambda *a, **k: None)
    torch.cuda.max_memory_allocated = lambda *a, **k: 0
    torch.cuda.get_device_name = lambda *a, **k: "dry run on the CPU"
PROMPTS = ["the food was", "we waited an hour", "a lovely place with", "the staff were", "the soup was cold and",
           "our waiter", "a table by the river", "the service"]


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


class Report:
    """Checks and figures, written to disk after every step."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only ({cpu_model()}, " \
            f"{os.cpu_count()} cores)"
        self.data = {"device": device, "torch": torch.__version__,
                     "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "checks": {}, "figures": {}, "notes": []}
        import transformers

        self.data["transformers"] = transformers.__version__

    def check(self, name: str, ok: bool, **detail) -> None:
        self.data["checks"][name] = bool(ok)
        if detail:
            self.data["figures"][name] = detail
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {json.dumps(detail, default=str) if detail else ''}", flush=True)
        self.save()

    def figure(self, name: str, value) -> None:
        self.data["figures"][name] = value
        print(f"      {name}: {json.dumps(value, default=str)}", flush=True)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


def build_models(root: Path, dims: dict, dtype: torch.dtype, scale: float) -> dict:
    """θ0 and two 'fine-tuned' policies (θ0 + seeded noise), saved with the tests' tokenizer."""
    from tiny import perturbed_copy, tiny_model, tiny_tokenizer

    base = tiny_model("llama", seed=0, dtype=dtype, **dims)
    base.save_pretrained(str(root / "base"))
    tiny_tokenizer(root / "base")
    paths = []
    for i in (1, 2):
        perturbed_copy(base, seed=i, scale=scale).save_pretrained(str(root / f"p{i}"))
        paths.append(str(root / f"p{i}"))
    return {"base": str(root / "base"), "policies": paths, "parameters": sum(p.numel() for p in base.parameters())}


def write_recipe(path: Path, models: dict, method: str, **extra) -> Path:
    import yaml

    recipe = {"base_model": models["base"], "method": method, "lines": {"alpha": "auto", "beta": 0.5},
              "models": [{"model": p, "weight": w} for p, w in zip(models["policies"], (0.3, 0.7))], **extra}
    path.write_text(yaml.safe_dump(recipe))
    return path


def spacings_apart(a: dict, b: dict) -> dict:
    """How far two merges are apart, in units of the dtype's spacing at each element of `a`."""
    worst, identical, total = 0.0, 0, 0
    for name, x in a.items():
        y = b[name]
        if not x.is_floating_point():
            assert torch.equal(x, y), name
            continue
        x64, y64 = x.double(), y.double()
        spacing = (torch.nextafter(x, torch.full_like(x, float("inf"))).double() - x64).abs()
        apart = ((x64 - y64).abs() / spacing).max().item()
        worst = max(worst, apart)
        identical += int((x == y).sum())
        total += x.numel()
    return {"max_spacings_apart": worst, "identical_fraction": identical / max(total, 1)}


def timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


# -- 1. lines merge on the GPU ---------------------------------------------------------------------------------

def check_merge(report: Report, work: Path, one_b: dict | None) -> None:
    from lines.merge import merge

    small = build_models(work / "merge_small", SMALL, torch.float32, scale=0.02)
    recipes = {"linear_lines": {"method": "linear"},
               "ties_lines": {"method": "ties", "parameters": {"density": 0.5}},
               "dare_ties": {"method": "dare_ties", "parameters": {"density": 0.5}, "seed": 3}}
    for name, extra in recipes.items():
        recipe = write_recipe(work / f"{name}.yaml", small, **extra)
        cpu_s, _ = timed(lambda: merge(recipe, work / f"{name}_cpu", progress=False))
        gpu_s, _ = timed(lambda: merge(recipe, work / f"{name}_lib_gpu", progress=False, device=GPU))
        # The command line, as a user runs it.
        run = subprocess.run([sys.executable, "-m", "lines.cli", "merge", str(recipe), str(work / f"{name}_gpu"),
                              "--device", GPU, "--quiet"], cwd=ROOT, capture_output=True, text=True)
        if run.returncode:
            report.check(f"merge_gpu_equals_cpu_{name}", False, stderr=run.stderr[-800:])
            continue
        apart = spacings_apart(state_dict_of(work / f"{name}_cpu"), state_dict_of(work / f"{name}_gpu"))
        same_lib = spacings_apart(state_dict_of(work / f"{name}_gpu"), state_dict_of(work / f"{name}_lib_gpu"))
        report.check(f"merge_gpu_equals_cpu_{name}", apart["max_spacings_apart"] <= 1.0
                     and same_lib["identical_fraction"] == 1.0, parameters=small["parameters"],
                     seconds_gpu=round(gpu_s, 2), seconds_cpu_one_thread=round(cpu_s, 2), **apart)
    # The tests of where a merge computes, with their GPU case (skipped on machines without one).
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_merge_device.py"],
                           cwd=ROOT, capture_output=True, text=True)
    report.check("pytest_test_merge_device", tests.returncode == 0, tail=tests.stdout.strip().splitlines()[-1:])
    if one_b is None:
        return
    # ~1B in bf16: linear + LiNeS on both (TIES's whole-tensor top-k on one CPU thread would take minutes here; its
    # CPU/GPU ratio is the small model's above).
    for name, extra, devices in (("linear_lines", {"method": "linear"}, (("cuda", GPU), ("cpu", None))),
                                 ("ties_lines", {"method": "ties", "parameters": {"density": 0.5}},
                                  (("cuda", GPU),))):
        recipe = write_recipe(work / f"1b_{name}.yaml", one_b, **extra)
        seconds = {}
        for key, device in devices:
            out = work / f"1b_{name}_{key}"
            seconds[key], _ = timed(lambda: merge(recipe, out, progress=False, device=device))
        apart = {}
        if "cpu" in seconds:
            apart = spacings_apart(state_dict_of(work / f"1b_{name}_cpu"), state_dict_of(work / f"1b_{name}_cuda"))
            apart["seconds_cpu_one_thread"] = round(seconds["cpu"], 2)
        finite = all(torch.isfinite(t.float()).all() for t in state_dict_of(work / f"1b_{name}_cuda").values())
        for key, _ in devices:
            shutil.rmtree(work / f"1b_{name}_{key}")
        report.check(f"merge_1b_bf16_{name}", finite and apart.get("max_spacings_apart", 0.0) <= 1.0,
                     seconds_gpu=round(seconds["cuda"], 2), parameters=one_b["parameters"], **apart)


# -- 2. the transformers backend on CUDA -----------------------------------------------------------------------

def check_generation(report: Report, work: Path, one_b: dict | None, demo_run: Path | None) -> None:
    from lines import MergeInputs, MergeSpec
    from lines.merge import merge_into_model
    from pipelines.generation import MergeRequest, TransformersGenerator

    greedy = {"temperature": 0, "max_new_tokens": 32, "seed": 0, "dtype": "float32", "batch_size": 8}
    if demo_run is not None and (demo_run / "base").is_dir():
        theta0, prompts, which = str(demo_run / "base"), demo_prompts(), "the demo's θ0 (trained)"
    else:
        theta0, prompts, which = build_models(work / "greedy", SMALL, torch.float32, 0.02)["base"], PROMPTS, \
            "a random small Llama"
    cpu = TransformersGenerator.from_pretrained(theta0, {**greedy, "device": "cpu"}).generate(prompts)
    gpu = TransformersGenerator.from_pretrained(theta0, {**greedy, "device": f"{GPU}:0" if GPU == "cuda" else GPU}).generate(prompts)
    same = sum(a.response == b.response for a, b in zip(cpu, gpu))
    report.check("greedy_fp32_cuda_equals_cpu", same == len(prompts), model=which, prompts=len(prompts),
                 identical=same, example=gpu[0].response[:80])
    if one_b is None:
        return
    points = [MergeSpec(method="linear", weights=[w, 1 - w], lines={"alpha": "auto", "beta": 0.5})
              for w in (0.1, 0.9, 0.3)]
    sampling = {"temperature": 1.0, "top_p": 1.0, "n": 1, "max_new_tokens": 64, "seed": 0, "dtype": "bfloat16",
                "batch_size": 64, "device": f"{GPU}:0" if GPU == "cuda" else GPU}
    gen = TransformersGenerator.from_pretrained(one_b["base"], sampling)
    with MergeInputs(one_b["base"], one_b["policies"]) as inputs:
        walls = {}
        for device in ("model", None):
            merge_into_model(gen.model, inputs, points[0], device=device)
            walls["gpu" if device else "cpu"] = [timed(lambda: merge_into_model(gen.model, inputs, s, device=device))[0]
                                                 for s in points[1:]]
    # The same swap through the backend's protocol, then its outputs against a fresh load of the merge on disk.
    request = MergeRequest(one_b["base"], tuple(one_b["policies"]), points[1], "w0.9")
    via_backend, _ = timed(lambda: gen.load_merge(request))
    report.check("swap_1b_in_place", all(torch.isfinite(p).all() for p in gen.model.parameters()),
                 seconds_per_swap_merge_on_gpu=round(statistics.median(walls["gpu"]), 2),
                 seconds_per_swap_merge_on_cpu=round(statistics.median(walls["cpu"]), 2),
                 seconds_load_merge=round(via_backend, 2), parameters=one_b["parameters"])
    many = [f"{p} {i}" for i in range(8) for p in PROMPTS][:64]
    gen.generate(many[:4])
    seconds, rows = timed(lambda: gen.generate(many))
    tokens = sum(r.response_tokens for r in rows)
    report.check("tokens_per_s_1b_bf16_batch64", tokens > 0, tokens=tokens, seconds=round(seconds, 2),
                 tokens_per_s=round(tokens / seconds))


def demo_prompts() -> list[str]:
    from pipelines.demo.data import demo_prompts as prompts_of

    return [p.prompt for p in prompts_of("test", 16, 0)]


# -- 3. training on CUDA ---------------------------------------------------------------------------------------

def smollm2_shaped(root: Path, demo_run: Path | None) -> str:
    """A random model of SmolLM2-135M-Instruct's shape with a BPE padded to its 49,152-token vocabulary."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipelines.demo.data import demo_corpus
    from pipelines.training.tokenizer_train import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(demo_corpus(2000, 0), vocab_size=1024, model_max_length=512)
    tokenizer.add_tokens([f"<w{i}>" for i in range(SMOLLM2["vocab_size"] - len(tokenizer))])
    config = AutoConfig.for_model("llama", pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, **SMOLLM2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(root))
    tokenizer.save_pretrained(str(root))
    return str(root)


def training_run_config(work: Path, base: str, algorithm: str) -> Path:
    import yaml

    block = {"algorithm": algorithm, "learning_rate": 1e-4, "max_steps": 3, "per_device_batch_size": 8,
             "precision": "auto" if DRY else "bf16", "beta": 0.1, "max_length": 128, "logging_steps": 1,
             "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"}}
    if algorithm == "dpo":
        block["dpo"] = {"pairs": "sampled", "samples_per_prompt": 4, "loss_type": ["sigmoid", "sft"],
                        "max_new_tokens": 32}
    else:
        block.update(rl={"max_new_tokens": 32, "temperature": 1.0}, ppo={"num_ppo_epochs": 2, "whiten_rewards": True})
    config = {
        "run_name": f"gpu_{algorithm}", "output_dir": str(work / "runs"), "seed": 0,
        "training": {"base": {"path": base}, "prompts": {"source": "demo", "n_train": 16, "n_eval": 8},
                     "training": block, "policies": [{"reward": "short"}, {"reward": "long"}],
                     "evaluation": {"samples_per_prompt": 1, "max_new_tokens": 32, "temperature": 1.0}},
        # Character counts: a random model's text varies in length, so DPO's pairs exist (VADER scores it all 0).
        "rewards": [{"name": "short", "type": "conciseness"}, {"name": "long", "type": "length", "min_words": 0}],
        "metrics": [{"name": "kl", "type": "kl"}],
        "prompts": {"source": "demo", "n_validation": 4, "n_eval": 8},
        "generation": {"backend": "transformers", "temperature": 1.0, "max_new_tokens": 32, "batch_size": 8},
        "sweep": {"points": 2, "variants": [{"name": "soup", "method": "linear"}]},
    }
    path = work / f"gpu_{algorithm}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def check_training(report: Report, work: Path, demo_run: Path | None) -> None:
    from pipelines.config.load import load_run_config
    from pipelines.training import train_all

    base = smollm2_shaped(work / "smollm2_shaped", demo_run)
    for algorithm in ("dpo", "ppo"):
        config = training_run_config(work, base, algorithm)
        plan = subprocess.run([sys.executable, "pipelines/merge_policies.py", "--config", str(config), "--check",
                               "--gpus", "1", "--gpu-memory", "141"], cwd=ROOT, capture_output=True, text=True)
        estimates = re.findall(r"memory per process: ([\d.]+ [MG]B) \(([^)]*)\)", plan.stdout)
        torch.cuda.reset_peak_memory_stats()
        try:
            seconds, policies = timed(lambda: train_all(load_run_config(config).train_config))
        except Exception as exc:  # the report names what failed; the other checks still run
            report.check(f"train_{algorithm}_lora_bf16_cuda", False, error=f"{type(exc).__name__}: {exc}"[:800],
                         check_stdout=plan.stdout[-600:])
            continue
        peak = torch.cuda.max_memory_allocated()
        manifests = [json.loads((Path(info.path) / "manifest.json").read_text()) for info in policies.values()]
        on_gpu = all(m["distributed"].get("device", "").startswith(GPU) for m in manifests)
        report.check(f"train_{algorithm}_lora_bf16_cuda", plan.returncode == 0 and len(manifests) == 2 and on_gpu,
                     seconds_two_policies=round(seconds, 1), peak_gb=round(peak / 1e9, 3),
                     check_estimate=estimates[:1], check_returncode=plan.returncode,
                     devices=[m["distributed"] for m in manifests],
                     precision=[m["hyperparameters"]["precision"] for m in manifests],
                     last_logged=[(m.get("training_curve") or [None])[-1] for m in manifests])


# -- 4. the demo's sweep on the GPU ------------------------------------------------------------------------------

def time_demo_sweep(report: Report, work: Path, demo_run: Path | None, where: str, limit: float) -> float | None:
    """Seconds of the demo's main job from its finished θ0 and policies (training reused; sweep and report redone)
    with `backend: transformers`, on the GPU (`where` = gpu) or with the GPU hidden (cpu); None if not run."""
    if demo_run is None or not (demo_run / "policies").is_dir():
        report.data["notes"].append("demo sweep not timed: no --demo-run with θ0 and policies")
        return None
    if limit < 120:
        report.data["notes"].append(f"demo sweep on the {where} not run: {limit:.0f} s left")
        return None
    runs = work / f"demo_{where}"
    shutil.copytree(demo_run, runs / "demo", ignore=shutil.ignore_patterns("sweep", "report", "seed-*", "study"))
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if where == "cpu" else {})}
    probe = LoadProbe()
    try:
        run = subprocess.run([sys.executable, "pipelines/merge_policies.py", "--config", "configs/demo.yaml",
                              "--set", f"output_dir={runs}", "--set", "generation.backend=transformers"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        report.figure(f"demo_sweep_{where}", {"seconds": f"more than {limit:.0f} (cut short)"})
        return None
    load = probe.stop()
    log = run.stdout + run.stderr
    if run.returncode:
        report.check(f"demo_sweep_{where}", False, stderr=log[-1500:])
        return None
    (report.path.parent / f"demo_{where}.log").write_text(log[-20000:])
    shutil.copy(runs / "demo" / "report" / "points.csv", report.path.parent / f"demo_points_{where}.csv")
    report.check(f"demo_sweep_{where}", log.count("reusing") == 3, seconds=round(load["wall_s"], 1),
                 stages_reused=log.count("reusing"), load=load)
    return load["wall_s"]


STEPS = ("merge", "generation", "training", "demo-sweep", "demo-sweep-cpu")
# The CPU reference of the demo's sweep needs no GPU: it can be measured on any machine with the same command.
CPU_ONLY = {"demo-sweep-cpu"}


def main(out: str, demo_run: str | None, skip_1b: bool, budget_s: float = 420.0, only: list[str] | None = None
         ) -> int:
    only = set(only or STEPS)
    if not torch.cuda.is_available() and not DRY and not only <= CPU_ONLY:
        print("error: gpu_check --no-vllm needs a CUDA GPU (torch.cuda.is_available() is False); run it on a GPU "
              "machine", file=sys.stderr)
        return 2
    report = Report(Path(out))
    work = Path(tempfile.mkdtemp(prefix="gpu_check_no_vllm_"))
    demo = Path(demo_run).resolve() if demo_run else None
    started = time.perf_counter()
    left = lambda: budget_s - (time.perf_counter() - started)  # noqa: E731
    one_b = None
    if not skip_1b and only & {"merge", "generation"}:
        seconds, one_b = timed(lambda: build_models(work / "one_b", ONE_B, torch.bfloat16, scale=0.01))
        report.figure("build_1b_seconds", round(seconds, 1))
    steps = {"merge": lambda: check_merge(report, work, one_b),
             "generation": lambda: check_generation(report, work, one_b, demo),
             "training": lambda: check_training(report, work, demo),
             "demo-sweep": lambda: time_demo_sweep(report, work, demo, "gpu", left() - 20),
             "demo-sweep-cpu": lambda: time_demo_sweep(report, work, demo, "cpu", left() - 20)}
    for step in [steps[name] for name in STEPS if name in only]:
        try:
            step()
        except Exception as exc:  # one failing step must not hide the others' results
            import traceback

            report.check(f"step_failed_{len(report.data['checks'])}", False, error=traceback.format_exc()[-1500:])
        report.figure("elapsed_s", round(time.perf_counter() - started, 1))
    for name, ok in report.data["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"report: {out}")
    return 0 if all(report.data["checks"].values()) else 1
