"""Every config schema of the pipelines, in one package, and how a config file becomes the typed object every stage
takes.

    sampling.py     the sampling settings (temperature, top_p, max_new_tokens, samples per prompt): declared once,
                    used by generation, DPO's sampled pairs, online RL and the training stage's evaluation
    generation.py   the `generation:` section (both backends, vLLM's engine settings)
    prompts.py      the main job's `prompts:` section and the training stage's `prompts:`
    training.py     the training stage's schema, and each policy's resolved settings
    run.py          the main job's RunConfig, composed of the sections above
    overrides.py    YAML files with `extends:`, `--set` overrides, the one deep merge
    checks.py       the rules across sections and what this machine can do, checked before any work
    load.py         file → overrides → schema → checks: `load_run_config`, `load_config` (training stage)

The schemas (sampling, generation, prompts, training, run) import no stage module, only the error types the stages
raise (pipelines/errors.py, pipelines/training/errors.py): the stages import them. checks.py sits above both: it asks
the stages' own checks (trl's trainer fields, prompt files, batch splits, the generation backend).
"""
