"""scorerecon workflow: ingest -> export -> sample -> report -> provenance (RO-Crate) (-> reconstruct -> evaluate).

`make demo` runs the built-in demo (`--configfile workflows/config/demo.yaml`); so does a plain
`snakemake --cores 2` that names no config file. `--configfile your.yaml` REPLACES the demo (it
is never merged into it: only your inputs run); `--profile workflows/profiles/slurm` for a
cluster. The config is checked against workflows/config/schema.json (one line per problem).
Every rule is a thin call of the `scorerecon` CLI (see workflows/*.smk).
"""

from snakemake.utils import min_version

min_version("9.0")


# The demo is the config only when the command line names none: a `configfile:` directive
# would be merged *under* the user's --configfile (Snakemake's rule), running the demo's inputs.
if not workflow.overwrite_configfiles:

    configfile: "workflows/config/demo.yaml"


include: "workflows/common.smk"
include: "workflows/ingest.smk"
include: "workflows/export.smk"
include: "workflows/train.smk"
include: "workflows/sample.smk"
include: "workflows/report.smk"
include: "workflows/reconstruct.smk"
include: "workflows/evaluate.smk"
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
