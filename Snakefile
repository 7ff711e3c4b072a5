"""scorerecon workflow: ingest -> export -> sample -> report -> provenance (RO-Crate) (-> reconstruct -> evaluate).

`snakemake --cores 2` runs the built-in demo (workflows/config/demo.yaml); use
`--configfile your.yaml` for your data and `--profile workflows/profiles/slurm` for a cluster.
Every rule is a thin call of the `scorerecon` CLI (see workflows/*.smk).
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflows/config/demo.yaml"


validate(config, "workflows/config/schema.json")


include: "workflows/common.smk"
include: "workflows/ingest.smk"
include: "workflows/export.smk"
include: "workflows/train.smk"
include: "workflows/sample.smk"
include: "workflows/report.smk"
include: "workflows/reconstruct.smk"
include: "workflows/natural.smk"
include: "workflows/remote.smk"
include: "workflows/provenance.smk"


rule all:
    default_target: True
    input:
        ingest_targets(),
        export_targets(),
        sample_targets(),
        evaluate_targets(),
        reconstruct_targets(),
        f"{OUT}/report.html",
        f"{OUT}/ro-crate-metadata.json",
