"""Every task's evaluation, one rule: baselines vs. diffusion solvers on held-out data (issues 4-6, 16).

`evaluate` runs `scorerecon evaluate --task {task}` for each entry of the config's `evaluate`
section -> <outdir>/eval/<task>.json (the result, docs/conventions.md section 3) and <outdir>/eval/<task>.npz
(the report's pictures, `--images`). The task names are the task registry's
(pipelines/tasks/registry.py). What the run reads follows the entry's shape (common.smk
`evaluate_inputs`): `store` (an ingested store: mri, ct), `images` (image files: photographs),
`input` + `ms` / `pan` (band files of an input: pansharpen); `checkpoint` names a prior under
checkpoints/, every other key is the option of the same name (`slices: "85,95"` -> `--slices
85,95`), all validated by workflows/config/schema.json. The model cards of the checkpoints the
run uses are inputs, so a retrained prior reruns its evaluations.
"""


rule evaluate:
    """Classical baselines vs. the task's diffusion solvers on held-out data -> eval/<task>.json + .npz."""
    input:
        unpack(evaluate_inputs),
    output:
        json=f"{OUT}/eval/{{task}}.json",
        images=f"{OUT}/eval/{{task}}.npz",  # the report's pictures (evaluate --images)
    wildcard_constraints:
        task="|".join(TASKS),
    params:
        engine=engine_options(),
        inputs=evaluate_args,
        opts=evaluate_options,
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/evaluate/{{task}}.log",
    benchmark:
        f"{OUT}/benchmarks/evaluate/{{task}}.tsv"
    resources:
        mem_mb=3000,
        runtime=30,
        cpus_per_task=2,
        gpu=GPUS,
    threads: 2
    shell:
        "scorerecon evaluate --task {wildcards.task} {params.inputs} {params.opts} {params.engine} "
        "--threads {threads} --json {output.json:q} --images {output.images:q} > {log:q} 2>&1"
