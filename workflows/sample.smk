rule sample:
    """Draw unconditional samples from a shipped prior: a quick check the checkpoint is sane."""
    input:
        card="checkpoints/{ckpt}/model_card.json",
        weights="checkpoints/{ckpt}/model.safetensors",
    output:
        f"{OUT}/samples/{{ckpt}}.png",
    params:
        n=config.get("samples", {}).get("n", 16),
        nfe=config.get("samples", {}).get("nfe", 200),
        seed=config.get("samples", {}).get("seed", 0),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/sample/{{ckpt}}.log",
    benchmark:
        f"{OUT}/benchmarks/sample/{{ckpt}}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
        cpus_per_task=2,
        gpu=GPUS,
    threads: 2
    shell:
        "scorerecon sample checkpoints/{wildcards.ckpt} --n {params.n} --nfe {params.nfe} "
        "--seed {params.seed} -o {output:q} > {log:q} 2>&1"
