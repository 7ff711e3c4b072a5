FORMAT_FILE = {"nifti": "{name}.nii.gz", "geotiff": "{name}.tif", "png": "{name}_png", "dicom": "{name}_dicom",
               "omezarr": "{name}.ome.zarr"}


rule export:
    """Write a store back to an archive format (same affine / CRS / transform as the source)."""
    input:
        f"{OUT}/stores/{{name}}.zarr",
    output:
        directory(f"{OUT}/exports/{{name}}/{{fmt}}"),
    wildcard_constraints:
        fmt="nifti|geotiff|png|dicom|omezarr",
    params:
        target=lambda wc, output: f"{output[0]}/{FORMAT_FILE[wc.fmt].format(name=wc.name)}",
        group=lambda wc: (f"--group {config['inputs'][wc.name]['export_group']}"
                          if "export_group" in config["inputs"][wc.name] else ""),
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/export/{{name}}.{{fmt}}.log",
    benchmark:
        f"{OUT}/benchmarks/export/{{name}}.{{fmt}}.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "mkdir -p {output:q} && "
        "scorerecon export {input:q} --format {wildcards.fmt} -o {params.target:q} {params.group} > {log:q} 2>&1"


rule export_reconstruction:
    """Export a reconstruction store (its RAS affine, source series and provenance kept) to NIfTI / DICOM / ...

    The same `scorerecon export` as for ingested stores: the DICOM is a derived series (ImageType
    DERIVED) on the reconstruction's own geometry; a few seconds per format.
    """
    input:
        f"{OUT}/recon/{{task}}.zarr",
    output:
        directory(f"{OUT}/recon/exports/{{task}}/{{fmt}}"),
    wildcard_constraints:
        task="[A-Za-z0-9_]+",
        fmt="nifti|png|dicom|omezarr",
    params:
        target=lambda wc, output: f"{output[0]}/{FORMAT_FILE[wc.fmt].format(name=wc.task)}",
    conda:
        "../environment.yml"
    log:
        f"{OUT}/logs/export/recon_{{task}}.{{fmt}}.log",
    benchmark:
        f"{OUT}/benchmarks/export/recon_{{task}}.{{fmt}}.tsv"
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "mkdir -p {output:q} && "
        "scorerecon export {input:q} --format {wildcards.fmt} -o {params.target:q} > {log:q} 2>&1"
