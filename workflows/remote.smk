"""Remote sensing on the demo Landsat-8 scene (issue 5): tiled pan-sharpening into a georeferenced
store + COG.

`reconstruct_pansharpen` runs `scorerecon reconstruct --task pansharpen` on the ingested scene
(pan 15 m + MS 30 m groups) and exports the 15 m result as a Cloud-Optimized GeoTIFF next to the
store. The held-out evaluation (`evaluate --task pansharpen` on the scene's band files: Wald
reduced resolution on the model's held-out columns, QNR at full resolution) is the generic
`evaluate` rule of workflows/evaluate.smk.
"""


rule reconstruct_pansharpen:
    """Residual-diffusion pan-sharpening of the whole scene in overlapping tiles (exact CRS/transform kept)."""
    input:
        store=lambda wc: task_store("reconstruct", "pansharpen"),
        card=lambda wc: f"{task_ckpt('reconstruct', 'pansharpen')}/model_card.json",
    output:
        store=directory(f"{OUT}/recon/pansharpen.zarr"),
        cog=f"{OUT}/recon/pansharpen.tif",
    params:
        engine=engine_options(),
        ckpt=lambda wc: task_ckpt("reconstruct", "pansharpen"),
        opts=lambda wc: " ".join(task_opt("reconstruct", "pansharpen", k) for k in
                                 ("nfe", "samples", "seed", "tile", "overlap")),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/reconstruct/pansharpen.log",
    benchmark:
        f"{OUT}/benchmarks/reconstruct/pansharpen.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
        cpus_per_task=2,
        gpu=GPUS,
    threads: 2
    shell:
        "(scorerecon reconstruct --task pansharpen --input {input.store:q} --checkpoint {params.ckpt:q} "
        "{params.opts} {params.engine} --threads {threads} -o {output.store:q} --overwrite && "
        "scorerecon export {output.store:q} --format geotiff -o {output.cog:q}) > {log:q} 2>&1"
