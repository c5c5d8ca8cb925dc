"""The main job. Run as `accelerate launch pipelines/merge_policies.py --config configs/demo.yaml`.

Current stage coverage: the merge engine. The demo config builds a tiny θ0 and two perturbed policies
locally (nothing is downloaded) and writes their LiNeS rewarded soup as a checkpoint under
runs/<run_name>/. Training, generation, scoring and the sweep report are separate stages still to come.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from lines import LinesError, merge, parse_recipe


def build_tiny_checkpoints(model_cfg: dict, root: Path) -> tuple[Path, list[Path]]:
    from transformers import AutoConfig, AutoModelForCausalLM

    family = model_cfg.pop("family", "llama")
    config = AutoConfig.for_model(family, **model_cfg)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config)
    base.save_pretrained(root / "base")
    policies = []
    for i in range(2):
        gen = torch.Generator().manual_seed(i + 1)
        with torch.no_grad():
            policy = AutoModelForCausalLM.from_config(config)
            policy.load_state_dict(base.state_dict())
            for p in policy.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
        policy.save_pretrained(root / f"policy_{i}")
        policies.append(root / f"policy_{i}")
    return root / "base", policies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    args = parser.parse_args(argv)
    try:
        cfg = yaml.safe_load(Path(args.config).read_text())
        run_dir = Path(cfg.get("output_dir", "runs")) / cfg.get("run_name", "demo")
        base, policies = build_tiny_checkpoints(dict(cfg["model"]), run_dir / "checkpoints")
        merge_cfg = cfg["merge"]
        recipe = parse_recipe({
            "base_model": str(base),
            "models": [{"model": str(p), "weight": w} for p, w in zip(policies, merge_cfg["weights"])],
            "method": merge_cfg.get("method", "linear"), "lines": merge_cfg.get("lines")}, args.config)
        out = merge(recipe, run_dir / "merged", force=True)
    except LinesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"merged checkpoint: {out}  (model card with the recipe and λ(ℓ): {out / 'README.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
