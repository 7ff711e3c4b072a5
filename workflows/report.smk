rule hardware:
    """Record the machine a GPU job is given (CPU, accelerator, SLURM allocation) for the report.

    The SLURM profile gives this rule the same GPU request as `sample` (set-resources), so the
    record shows what the GPU steps of the run got; run locally it describes this machine.
    """
    output:
        f"{OUT}/hardware.json",
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/hardware.log",
    benchmark:
        f"{OUT}/benchmarks/hardware.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "scorerecon report --hardware -o {output:q} > {log:q} 2>&1"


rule report:
    """One self-contained HTML page: store previews + geometry/provenance, samples, evaluations with their
    pictures (eval/<task>.npz beside each JSON), reconstructions with their pictures and exports, timings."""
    input:
        stores=ingest_targets(),
        exports=export_targets(),
        samples=sample_targets(),
        evaluations=evaluate_targets(),
        reconstructions=reconstruct_targets(),
        reconstruction_exports=reconstruction_export_targets(),
        hardware=f"{OUT}/hardware.json",
    output:
        f"{OUT}/report.html",
    params:
        outdir=lambda wc, output: str(Path(output[0]).parent),
        # only this config's stores, samples, evaluations and reconstructions (not leftovers of an earlier config)
        only=lambda wc, input: " ".join(
            shlex.quote(p)
            for p in [*input.stores, *input.samples, *input.evaluations, *input.reconstructions]
        ),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "scorerecon report --outdir {params.outdir:q} -o {output:q} --only {params.only} > {log:q} 2>&1"
