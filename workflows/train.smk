rule training_store:
    """Ingest a shipped training volume (data/demo/NAME.nii.gz) into the store training configs name."""
    input:
        "data/demo/{stem}.nii.gz",
    output:
        directory("results/stores/{stem}.zarr"),
    conda:
        "../environment.yml"
    log:
        "results/logs/training_store/{stem}.log",
    benchmark:
        "results/benchmarks/training_store/{stem}.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "scorerecon ingest {input:q} -o {output:q} --overwrite --quiet > {log:q} 2>&1"


rule train:
    """Reproduce a shipped prior from its training config (CPU: tens of minutes; GPU: minutes)."""
    input:
        config="workflows/config/train/{config_name}.yaml",
        stores=lambda wc: training_sources(f"workflows/config/train/{wc.config_name}.yaml"),
    output:
        f"{OUT}/train/{{config_name}}/model.safetensors",
        f"{OUT}/train/{{config_name}}/model_card.json",
    conda:
        "../environment.yml"
    params:
        outdir=lambda wc, output: str(Path(output[0]).parent),
    log:
        f"{OUT}/logs/train/{{config_name}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{config_name}}.tsv"
    resources:
        mem_mb=8000,
        runtime=240,
        cpus_per_task=2,
        gpu=1,
    threads: 2
    shell:
        "scorerecon train {input.config:q} --output {params.outdir:q} > {log:q} 2>&1"


rule train_all:
    """`snakemake train_all` retrains every prior listed in config train.configs (or all shipped)."""
    input:
        lambda wc: [
            f"{OUT}/train/{name}/model_card.json"
            for name in (config.get("train", {}).get("configs")
                         or [Path(p).stem for p in sorted(glob.glob("workflows/config/train/*.yaml"))])
        ],
