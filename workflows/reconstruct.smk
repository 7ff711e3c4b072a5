"""Score-based reconstruction and evaluation on the demo stores (issue 4).

`evaluate_mri` / `evaluate_ct` run baselines and diffusion solvers on held-out slices and write
<outdir>/eval/{mri,ct}.json (DESIGN.md section 3 schema); `reconstruct_mri` / `reconstruct_ct`
reconstruct a demo store into <outdir>/recon/{mri,ct}.zarr. Settings come from the config's
`evaluate` and `reconstruct` sections (validated by workflows/config/schema.json); the demo keeps
them small (2 slices, 20 NFE, small crops) so these rules take a few minutes on two CPU cores.
"""


rule evaluate_mri:
    """Baselines (zero-filled, TV, L1-wavelet) vs. diffusion solvers on held-out brain MRI slices."""
    input:
        store=lambda wc: task_store("evaluate", "mri"),
        card=lambda wc: f"{task_ckpt('evaluate', 'mri')}/model_card.json",
    output:
        json=f"{OUT}/eval/mri.json",
        images=f"{OUT}/eval/mri.npz",  # the report's pictures (evaluate --images)
    params:
        ckpt=lambda wc: task_ckpt("evaluate", "mri"),
        opts=lambda wc: " ".join(task_opt("evaluate", "mri", k) for k in
                                 ("slices", "accel", "mask", "nfe", "seed", "crop", "downsample", "solvers",
                                  "baselines", "samples")),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/evaluate/mri.log",
    benchmark:
        f"{OUT}/benchmarks/evaluate/mri.tsv"
    resources:
        mem_mb=3000,
        runtime=30,
        cpus_per_task=2,
    threads: 2
    shell:
        "scorerecon evaluate --task mri --input {input.store:q} --checkpoint {params.ckpt:q} {params.opts} "
        "--threads {threads} --json {output.json:q} --images {output.images:q} > {log:q} 2>&1"


rule evaluate_ct:
    """Baselines (FBP, SART, TV) vs. diffusion solvers on held-out head-CT slices (simulated sinograms)."""
    input:
        store=lambda wc: task_store("evaluate", "ct"),
        card=lambda wc: f"{task_ckpt('evaluate', 'ct')}/model_card.json",
    output:
        json=f"{OUT}/eval/ct.json",
        images=f"{OUT}/eval/ct.npz",  # the report's pictures (evaluate --images)
    params:
        ckpt=lambda wc: task_ckpt("evaluate", "ct"),
        opts=lambda wc: " ".join(task_opt("evaluate", "ct", k) for k in
                                 ("slices", "views", "arc", "nfe", "seed", "crop", "downsample", "solvers",
                                  "baselines", "samples")),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/evaluate/ct.log",
    benchmark:
        f"{OUT}/benchmarks/evaluate/ct.tsv"
    resources:
        mem_mb=3000,
        runtime=30,
        cpus_per_task=2,
    threads: 2
    shell:
        "scorerecon evaluate --task ct --input {input.store:q} --checkpoint {params.ckpt:q} {params.opts} "
        "--threads {threads} --json {output.json:q} --images {output.images:q} > {log:q} 2>&1"


rule reconstruct_mri:
    """Score-based reconstruction of a k-space store (the real twix phantom), retrospectively undersampled."""
    input:
        store=lambda wc: task_store("reconstruct", "mri"),
        card=lambda wc: f"{task_ckpt('reconstruct', 'mri')}/model_card.json",
    output:
        directory(f"{OUT}/recon/mri.zarr"),
    params:
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
    threads: 2
    shell:
        "scorerecon reconstruct --task mri --input {input.store:q} --checkpoint {params.ckpt:q} {params.opts} "
        "--threads {threads} -o {output:q} --overwrite > {log:q} 2>&1"


rule reconstruct_ct:
    """Score-based reconstruction of CT slices from sinograms simulated from an image store."""
    input:
        store=lambda wc: task_store("reconstruct", "ct"),
        card=lambda wc: f"{task_ckpt('reconstruct', 'ct')}/model_card.json",
    output:
        directory(f"{OUT}/recon/ct.zarr"),
    params:
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
    threads: 2
    shell:
        "scorerecon reconstruct --task ct --input {input.store:q} --checkpoint {params.ckpt:q} {params.opts} "
        "--threads {threads} -o {output:q} --overwrite > {log:q} 2>&1"
