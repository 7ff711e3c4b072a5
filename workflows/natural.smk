"""Natural-image restoration on the demo photo (issue 6): baselines vs. diffusion, one JSON per task.

`evaluate_natural` runs `scorerecon evaluate --task {sr,deblur,denoise,inpaint,lowlight}` on the
configured images (held out from the Kodak priors' training) and writes <outdir>/eval/<task>.json.
The priors are `checkpoints/kodak_prior` (zero-shot solvers) and the conditional `kodak_sr4` /
`kodak_lowlight`; settings come from the config's `evaluate.<task>` entry (schema.json).
"""

rule evaluate_natural:
    """Bicubic / Wiener / TV / NLM / BM3D / biharmonic / CLAHE vs. DDRM, DiffPIR, DPS and conditional models."""
    input:
        images=lambda wc: config["evaluate"][wc.task]["images"],
        cards=lambda wc: natural_cards(wc.task),
    output:
        json=f"{OUT}/eval/{{task}}.json",
        images=f"{OUT}/eval/{{task}}.npz",  # the report's pictures (evaluate --images)
    wildcard_constraints:
        task="|".join(NATURAL_TASKS),
    params:
        ckpt=lambda wc: (f"--checkpoint checkpoints/{config['evaluate'][wc.task]['checkpoint']}"
                         if "checkpoint" in config["evaluate"][wc.task] else ""),
        opts=lambda wc: " ".join(task_opt("evaluate", wc.task, k) for k in
                                 ("crop", "nfe", "seed", "scale", "sigma", "kernel", "mask", "samples", "solvers",
                                  "baselines")),
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
    threads: 2
    shell:
        "scorerecon evaluate --task {wildcards.task} --input {input.images:q} {params.ckpt} {params.opts} "
        "--threads {threads} --json {output.json:q} --images {output.images:q} > {log:q} 2>&1"
