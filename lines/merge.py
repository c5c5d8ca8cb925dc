"""Entry points of the merge engine: to a checkpoint directory, or into a loaded model."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import torch

from .atomic import mapped_write_errors, output_directory_beside, replace_directory
from .checkpoint import Checkpoint
from .engine import ResolvedLines, TensorMerger
from .errors import LinesError
from .lora_soup import write_adapter_soup
from .mergekit_config import MergekitRecipe, write_chat_template
from .model_card import render_model_card
from .prefetch import BackgroundCalls
from .recipe import MergeSpec, Recipe
from .recipe_file import load_recipe
from .ranks import LaunchRanks
from .safetensors_writer import OutputTensor, StreamingSafetensorsWriter, plan_shards
from .task_vectors import MergeInputs

OUTPUT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "float64": torch.float64}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _version() -> str:
    try:
        return version("lines-soups")
    except Exception:
        return "unknown"


def merge(recipe: Recipe | str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False,
          allow_pickle: bool = False, progress: bool = True, threads: int | None = 1,
          ranks: LaunchRanks | None = None, device: str | None = None) -> Path:
    """Merge as the recipe says and write a loadable checkpoint to `out_dir`; returns its path.

    Output goes to a temporary directory beside `out_dir`, renamed into place only on success, so a failed
    merge leaves nothing behind. An existing `out_dir` is an error unless `force`.

    `ranks`: the processes of a launch sharing the work (`lines merge` under `accelerate launch` or `torchrun`
    passes them): each writes its round-robin share of the output's shards into one temporary directory and the
    main process publishes it, the same bytes as one process. None: this process alone.

    `threads`: torch compute threads during the merge. One is fastest: blocks are cache-sized, and the reading
    and writing threads need the other cores. None leaves torch's setting alone.

    `device`: where the merge computes (None: the CPU; `cuda`, `cuda:N`: a GPU). Reading and writing stay on the
    host; merged tensors come back to it to be written.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    ranks = ranks or LaunchRanks(alone=True)
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise LinesError(f"{out_dir}: output directory already exists; choose another path or pass --force")
    with MergeInputs(recipe.base_model, [m.model for m in recipe.models], allow_pickle) as inputs, \
            compute_threads(threads):
        merger = TensorMerger(recipe.spec(), inputs, device=device)
        lines = merger.resolve_lines(progress)
        if recipe.output == "adapter":
            card = render_model_card(recipe, inputs, lines, _version())
            # An adapter is small: the main process writes it while the others wait.
            ranks.together(lambda: ranks.is_main and write_adapter_soup(inputs, recipe.spec(), out_dir, lines, card),
                           "writing the adapter soup")
            return out_dir
        out_dtype = _output_dtypes(inputs.base, recipe.dtype)
        planned = [OutputTensor(n, out_dtype[n], inputs.base.info(n).shape) for n in inputs.names]
        # Under a launcher the processes split the output's shards; one temporary directory for all of them.
        # The main process creates it (a place where nothing can be written stops every process with one line).
        tmp = Path(ranks.broadcast(ranks.together(
            lambda: str(output_directory_beside(out_dir)) if ranks.is_main else None, "creating the output directory")))

        def write_my_shards() -> None:
            with mapped_write_errors(tmp):  # the side files; the shards name their own file
                write_shards_and_side_files()

        def write_shards_and_side_files() -> None:
            only = ranks.shards_of_mine(len(plan_shards(planned, recipe.max_shard_bytes))) if ranks.world > 1 else None
            writer = StreamingSafetensorsWriter(tmp, planned, recipe.max_shard_bytes, only_shards=only)
            write = BackgroundCalls(writer.write)  # writes overlap the next blocks' compute
            try:
                for name, _, block in merger.iter_merged(lines, out_dtype, progress, only=writer.tensor_names()):
                    write(name, block.cpu())
            finally:
                write.close()
            writer.close(write_index=ranks.is_main)
            if ranks.is_main:
                _copy_side_files(inputs.base, tmp, recipe.dtype)
                if isinstance(recipe, MergekitRecipe) and recipe.chat_template is not None:
                    write_chat_template(tmp, recipe.chat_template)
                (tmp / "README.md").write_text(render_model_card(recipe, inputs, lines, _version()))

        def publish() -> None:
            if ranks.is_main:
                replace_directory(tmp, out_dir)

        try:
            ranks.together(write_my_shards, "writing its shards of the merge")
            ranks.together(publish, "moving the merge into place")
        except BaseException:
            if ranks.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out_dir


@contextmanager
def compute_threads(threads: int | None):
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def merge_into_model(model: torch.nn.Module, inputs: MergeInputs, spec: MergeSpec, *,
                     progress: bool = False, lines: ResolvedLines | None | str = "resolve",
                     threads: int | None = 1, device: str | torch.device | None = "model") -> ResolvedLines | None:
    """Write the merge of `inputs` under `spec` straight into `model`'s parameters, in place.

    `model` must hold the same tensors as θ0 (a model loaded from θ0 or any policy). Nothing is written to disk
    and nothing is reloaded, so a sweep can reuse one live (e.g. generation) model for every point. Pass
    `lines` to reuse an already resolved schedule (skips the `alpha: auto` pass); returns the one applied.
    `threads`: torch compute threads during the merge (see `merge`), restored afterwards.
    `device`: where the merge computes; "model" (the default) is where the model's first tensor lives, so a model on
    a GPU is merged on that GPU and each merged tensor is copied in place there; None is the CPU.
    """
    targets = module_tensors(model, inputs)
    if device == "model":
        device = next(iter(targets.values())).device if targets else None
    merger = TensorMerger(spec, inputs, device=device)
    with torch.no_grad(), compute_threads(threads):
        resolved = merger.resolve_lines(progress) if lines == "resolve" else lines
        for name, rows, block in merger.iter_merged(resolved, {n: t.dtype for n, t in targets.items()},
                                                    progress, desc="merging into model"):
            target = targets[name] if rows is None else targets[name][rows[0]:rows[1]]
            target.copy_(block.to(target.device))
    return resolved


def iter_merged_tensors(inputs: MergeInputs, spec: MergeSpec, *, lines: ResolvedLines | None | str = "resolve",
                        progress: bool = False, block_elements: int | None = None
                        ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, merged tensor) for every tensor of θ0, whole (row blocks joined), in θ0's dtypes: what a serving
    engine's in-place weight loader takes (e.g. vLLM's). Memory holds one tensor at a time. `block_elements`:
    the row-block size of elementwise methods (default: cache-sized blocks for the CPU; a GPU wants whole
    tensors)."""
    merger = TensorMerger(spec, inputs, block_elements)
    resolved = merger.resolve_lines(progress) if lines == "resolve" else lines
    pending_name, parts = None, []
    for name, rows, block in merger.iter_merged(resolved, progress=progress):
        if rows is None:
            yield name, block
            continue
        parts.append(block)
        pending_name = name
        if rows[1] == inputs.base.info(name).shape[0]:
            yield pending_name, torch.cat(parts)
            parts = []


def module_tensors(model: torch.nn.Module, inputs: MergeInputs) -> dict[str, torch.Tensor]:
    """Checkpoint tensor name -> the model's parameter/buffer it is loaded into (shapes checked)."""
    state = dict(model.named_parameters(remove_duplicate=False))
    state.update(dict(model.named_buffers(remove_duplicate=False)))
    prefix = getattr(model, "base_model_prefix", "")
    found: dict[str, torch.Tensor] = {}
    for name, info in inputs.base.tensors.items():
        candidates = []
        for alias in inputs.layer_map.module_name_candidates(name):
            # peft wraps adapted layers: their own weight becomes `<module>.base_layer.weight`.
            module, _, leaf = alias.rpartition(".")
            for form in (alias, f"{module}.base_layer.{leaf}" if module else alias):
                candidates += [form, f"{prefix}.{form}", form.removeprefix(f"{prefix}.")] if prefix else [form]
        key = next((c for c in candidates if c in state), None)
        if key is None:
            raise LinesError(f"checkpoint tensor {name!r} has no counterpart in the model "
                             f"({type(model).__name__}); load the model from the base checkpoint")
        tensor = state[key]
        if tuple(tensor.shape) != info.shape:
            raise LinesError(f"model tensor {key!r} has shape {list(tensor.shape)}, but {info.file} stores "
                             f"{name!r} as {list(info.shape)}")
        found[name] = tensor.data
    return found


def _output_dtypes(base: Checkpoint, dtype: str | None) -> dict[str, torch.dtype]:
    """Each tensor keeps θ0's dtype unless the recipe sets one; integer tensors always keep theirs."""
    out = {}
    for name, info in base.tensors.items():
        out[name] = OUTPUT_DTYPES[dtype] if dtype and info.dtype.is_floating_point else info.dtype
    return out


def _copy_side_files(base: Checkpoint, out_dir: Path, dtype: str | None) -> None:
    """config, generation config and tokenizer files come from θ0; weights and θ0's card do not."""
    weight_files = base.weight_file_names()
    for entry in base.path.iterdir():
        if (not entry.is_file() or entry.name in weight_files or entry.name.endswith(_WEIGHT_SUFFIXES)
                or entry.name == "README.md"):
            continue
        shutil.copy2(entry, out_dir / entry.name)
    if dtype:
        config_path = out_dir / "config.json"
        config = json.loads(config_path.read_text())
        config["dtype"] = dtype
        if "torch_dtype" in config:
            config["torch_dtype"] = dtype
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
