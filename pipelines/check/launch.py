"""The launch a config is meant for: an accelerate config file and the GPUs of the machine that will run it.

    python pipelines/merge_policies.py --config X --check --accelerate-config configs/accelerate/deepspeed_zero2.yaml
                                                          [--gpus 8] [--gpu-memory 80]

The GPU count and memory are this machine's when it has CUDA devices, else what --gpus / --gpu-memory say (the
machine the run is for), else unknown: the checks that need them are then skipped and the plan says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lines.user_files import read_yaml_mapping

from ..errors import PipelineError


@dataclass(frozen=True)
class Launch:
    config_file: str | None        # the accelerate config, or None (one process)
    processes: int                 # accelerate's num_processes
    distributed: str               # accelerate's distributed_type: NO, MULTI_GPU, DEEPSPEED, ...
    use_cpu: bool
    zero_stage: int                # 0 without DeepSpeed
    offload_optimizer: bool
    offload_params: bool
    gpus: int | None               # GPUs of the machine the run is for (None: unknown)
    gpu_memory_gb: float | None    # memory of one of them
    gpus_from: str                 # where the GPU facts come from

    def describe(self) -> str:
        launcher = self.config_file or "no accelerate config (one process)"
        kind = f"DeepSpeed ZeRO-{self.zero_stage}" if self.distributed == "DEEPSPEED" else self.distributed
        offload = " with " + " and ".join(
            x for x, on in (("optimizer", self.offload_optimizer), ("parameters", self.offload_params)) if on) + \
            " offloaded to CPU" if self.offload_optimizer or self.offload_params else ""
        gpus = "unknown GPUs" if self.gpus is None else f"{self.gpus} GPU{'s' * (self.gpus != 1)}"
        memory = f" of {self.gpu_memory_gb:g} GB" if self.gpu_memory_gb else ""
        cpu = ", use_cpu" if self.use_cpu else ""
        return f"{launcher}: {self.processes} process{'es' * (self.processes != 1)}, {kind}{offload}{cpu}; " \
               f"{gpus}{memory} ({self.gpus_from})"


def visible_gpus() -> tuple[int | None, float | None]:
    import torch  # heavy: only when --gpus does not say how many GPUs there are

    if not torch.cuda.is_available():
        return None, None
    return torch.cuda.device_count(), torch.cuda.get_device_properties(0).total_memory / 1e9


def read_launch(config_file: str | None, gpus: int | None = None, gpu_memory_gb: float | None = None) -> Launch:
    """The launch described by `config_file` on the target machine; one-line errors for a file that cannot be
    used and for more processes than GPUs."""
    here, here_memory = visible_gpus()
    if here is not None:
        target, memory, source = here, here_memory, "visible here"
    elif gpus is not None:
        target, memory, source = gpus, gpu_memory_gb, "--gpus"
    else:
        target, memory, source = None, gpu_memory_gb, "no GPU visible here; give --gpus for the target machine"
    if config_file is None:
        return Launch(None, 1, "NO", False, 0, False, False, target, memory, source)
    data = read_yaml_mapping(config_file, PipelineError, what="accelerate config")
    processes = data.get("num_processes", 1)
    if not isinstance(processes, int) or processes < 1:
        raise PipelineError(f"{config_file}: num_processes is {processes!r}; give the number of processes (one per "
                            "GPU)")
    distributed = str(data.get("distributed_type", "NO"))
    use_cpu = bool(data.get("use_cpu", False))
    zero, offload_optimizer, offload_params = 0, False, False
    if distributed == "DEEPSPEED":
        zero, offload_optimizer, offload_params = _deepspeed(config_file, data.get("deepspeed_config") or {})
    if target is not None and not use_cpu and processes > target:
        raise PipelineError(f"{config_file}: num_processes is {processes} but the machine has {target} GPU"
                            f"{'s' * (target != 1)} ({source}); set num_processes to {target}")
    return Launch(str(config_file), processes, distributed, use_cpu, zero, offload_optimizer, offload_params,
                  target, memory, source)


def _deepspeed(config_file: str, section: dict) -> tuple[int, bool, bool]:
    """(ZeRO stage, optimizer offloaded, parameters offloaded) from the DeepSpeed JSON the accelerate config names
    (read relative to the directory the job is started in, as accelerate does) or from its inline settings."""
    json_file = section.get("deepspeed_config_file")
    if json_file:
        path = Path(json_file)
        if not path.is_file():
            raise PipelineError(f"{config_file}: deepspeed_config_file '{json_file}' does not exist; fix the path "
                                "(read from the directory the job is started in)")
        try:
            zero = json.loads(path.read_text()).get("zero_optimization", {})
        except ValueError as err:
            raise PipelineError(f"{json_file}: not valid JSON ({err}); fix the DeepSpeed config") from None
        return (int(zero.get("stage", 0)), (zero.get("offload_optimizer") or {}).get("device") in ("cpu", "nvme"),
                (zero.get("offload_param") or {}).get("device") in ("cpu", "nvme"))
    return (int(section.get("zero_stage", 0)), section.get("offload_optimizer_device") in ("cpu", "nvme"),
            section.get("offload_param_device") in ("cpu", "nvme"))
