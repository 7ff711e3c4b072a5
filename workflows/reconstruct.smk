"""Score-based reconstruction of the demo stores (issue 4).

`reconstruct_mri` / `reconstruct_ct` reconstruct a demo store into <outdir>/recon/{mri,ct}.zarr.
Settings come from the config's `reconstruct` section (validated by workflows/config/schema.json);
the demo keeps them small (20-30 NFE, small crops) so these rules take a few minutes on two CPU
cores. Evaluations of every task are one rule, workflows/evaluate.smk.
"""


rule reconstruct_mri:
    """Score-based reconstruction of a k-space store (the real twix phantom), retrospectively undersampled."""
    input:
        store=lambda wc: task_store("reconstruct", "mri"),
        card=lambda wc: f"{task_ckpt('reconstruct', 'mri')}/model_card.json",
    output:
        directory(f"{OUT}/recon/mri.zarr"),
    params:
        engine=engine_options(),
        ckpt=lambda wc: task_ckpt("reconstruct", "mri"),
        opts=lambda wc: " ".join(task_opt("reconstruct", "mri", k) for k in
                                 ("solver", "nfe", "seed", "samples", "slices", "mask", "accel", "complex_mode",
                                  "intensity", "tv_z")),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/reconstruct/mri.log",
    benchmark:
        f"{OUT}/benchmarks/reconstruct/mri.tsv"
    resources:
        mem_mb=3000,
        runtime=30,
        cpus_per_task=2,
        gpu=GPUS,
    threads: 2
    shell:
        "scorerecon reconstruct --task mri --input {input.store:q} --checkpoint {params.ckpt:q} {params.opts} "
        "{params.engine} --threads {threads} -o {output:q} --overwrite > {log:q} 2>&1"


rule reconstruct_ct:
    """Score-based reconstruction of CT slices from sinograms simulated from an image store."""
    input:
        store=lambda wc: task_store("reconstruct", "ct"),
        card=lambda wc: f"{task_ckpt('reconstruct', 'ct')}/model_card.json",
    output:
        directory(f"{OUT}/recon/ct.zarr"),
    params:
        engine=engine_options(),
        ckpt=lambda wc: task_ckpt("reconstruct", "ct"),
        opts=lambda wc: " ".join(task_opt("reconstruct", "ct", k) for k in
                                 ("solver", "nfe", "seed", "samples", "slices", "views", "arc", "crop",
                                  "downsample", "tv_z")),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/reconstruct/ct.log",
    benchmark:
        f"{OUT}/benchmarks/reconstruct/ct.tsv"
    resources:
        mem_mb=3000,
        runtime=30,
        cpus_per_task=2,
        gpu=GPUS,
    threads: 2
    shell:
        "scorerecon reconstruct --task ct --input {input.store:q} --checkpoint {params.ckpt:q} {params.opts} "
        "{params.engine} --threads {threads} -o {output:q} --overwrite > {log:q} 2>&1"
