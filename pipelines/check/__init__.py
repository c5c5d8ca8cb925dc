"""`--check`: a run config validated without weights, for the machine it is meant for, and its plan.

    python pipelines/merge_policies.py --config configs/real_llama3_8b.yaml --check \
        [--accelerate-config configs/accelerate/deepspeed_zero2.yaml] [--gpus 8] [--gpu-memory 80]

Checked: the schema and the rules across sections (as any run), every local file, every hub id well formed (one not
in this machine's hub cache is fetched where the run starts, and listed), LoRA ranks against vLLM's max_lora_rank,
the accelerate config against the GPU count, and what this machine can check of the rest (without a GPU, the
GPU-only settings are listed rather than refused). Printed: the plan (stages, points, generations, memory per GPU
estimated from the models' config.json where it is here). A problem is one `error:` line and exit code 2.
"""
from __future__ import annotations

from ..config.checks import check_machine_for_plan
from ..config.load import load_run_config
from .launch import read_launch
from .plan import Plan, build_plan


def check_and_plan(config: str, overrides: list[str] = (), accelerate_config: str | None = None,
                   gpus: int | None = None, gpu_memory_gb: float | None = None) -> Plan:
    cfg = load_run_config(config, overrides, hub_ids="well_formed")
    launch = read_launch(accelerate_config, gpus, gpu_memory_gb)
    set_aside = check_machine_for_plan(cfg)
    return build_plan(cfg, launch, set_aside)


__all__ = ["Plan", "check_and_plan"]
