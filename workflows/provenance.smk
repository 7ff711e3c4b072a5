rule provenance:
    """The run's Workflow Run RO-Crate + PROV-JSON: every job, input, output (sha256), parameter, checkpoint.

    Runs last (after the report); `scorerecon provenance verify OUTPUT` checks outputs against it.
    """
    input:
        ingest_targets(),
        export_targets(),
        sample_targets(),
        f"{OUT}/hardware.json",
        f"{OUT}/report.html",
    output:
        crate=f"{OUT}/ro-crate-metadata.json",
        prov=f"{OUT}/provenance.prov.json",
    params:
        outdir=lambda wc, output: str(Path(output.crate).parent),
        snakefile=workflow.main_snakefile,
        configfiles=" ".join(f"--configfile {shlex.quote(str(c))}" for c in workflow.configfiles),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/provenance.log",
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "scorerecon provenance crate {params.outdir:q} --snakefile {params.snakefile:q} {params.configfiles} "
        "> {log:q} 2>&1"
