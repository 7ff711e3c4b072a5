rule ingest:
    """Read one configured input into a chunked Zarr v3 store (sources are never modified)."""
    input:
        lambda wc: source_paths(wc.name),
    output:
        directory(f"{OUT}/stores/{{name}}.zarr"),
    params:
        reader=lambda wc: (f"--reader {config['inputs'][wc.name]['reader']}"
                           if "reader" in config["inputs"][wc.name] else ""),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/ingest/{{name}}.log",
    benchmark:
        f"{OUT}/benchmarks/ingest/{{name}}.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
        cpus_per_task=1,
    shell:
        "scorerecon ingest {input:q} -o {output:q} {params.reader} --overwrite --quiet > {log:q} 2>&1"
