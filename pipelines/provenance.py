"""``scorerecon provenance``: build a run's RO-Crate, export it as PROV-JSON, verify an output.

* ``scorerecon provenance crate RUN_DIR`` writes ``RUN_DIR/ro-crate-metadata.json`` (a Workflow /
  Provenance Run Crate of the whole run) and ``RUN_DIR/provenance.prov.json``, from Snakemake's
  job records in ``--workdir/.snakemake`` (default: the current folder, where Snakemake ran);
  ``--snakefile`` / ``--configfile`` are snapshotted into ``RUN_DIR/workflow/``. The workflow's
  ``provenance`` rule runs this at the end of every run.
* ``scorerecon provenance prov RUN_DIR [-o FILE]`` prints (or writes) the PROV-JSON of a crate.
* ``scorerecon provenance verify OUTPUT`` recomputes the sha256 of ``OUTPUT`` (a file, a folder,
  or the run folder for everything) and of everything it was made from, back to the source files
  and checkpoints; a difference is one ``scorerecon: error: <file>: ...`` line and exit 2. Outside
  a run folder (an output of the plain ``ingest`` / ``reconstruct`` / ``export`` commands), or
  with ``--standalone``, it checks the provenance the output itself carries instead: sources'
  and prior's sha256, input stores in turn, every chunk of a store read back
  (:mod:`scorerecon.modalities.io.verify`).

The work is done in :mod:`scorerecon.modalities.io.rocrate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scorerecon.errors import InputError
from scorerecon.modalities.io.rocrate import build_crate, crate_to_prov, find_crate, read_crate, verify
from scorerecon.modalities.io.verify import verify_output
from scorerecon.pipelines.options import output_file


def _crate(args: argparse.Namespace) -> int:
    path = build_crate(args.run_dir, workdir=args.workdir, snakefile=args.snakefile,
                       configfiles=args.configfile or [])
    print(f"wrote {path}")
    return 0


def _prov(args: argparse.Namespace) -> int:
    crate = find_crate(args.run_dir)
    text = crate_to_prov(read_crate(crate)).serialize(format="json", indent=2)
    if args.output:
        args.output.write_text(text + "\n")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text + "\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        crate = None if args.standalone else find_crate(args.output)
    except InputError:
        crate = None  # not in a run folder: the output's own provenance record
    if crate is None:
        lines, missing = verify_output(args.output)
        summary = (f"verified {args.output} from the provenance it carries: "
                   f"{sum(line.startswith('ok ') for line in lines)} check(s) passed"
                   + (f", {missing} recorded file(s) not found (not checked)" if missing else ""))
    else:
        lines = verify(args.output, workdir=args.workdir)
        summary = f"verified {len(lines)} file(s) against {crate}"
    if not args.quiet:
        print("\n".join(lines))
    print(summary)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``provenance`` sub-command (crate, prov, verify) to the ``scorerecon`` parser."""
    parser = subparsers.add_parser(
        "provenance", help="RO-Crate of a run, its PROV-JSON, and verification of outputs",
        description="Record and check where a run's outputs came from (sha256 of every file, each job "
        "with its inputs, parameters, software and timings).")
    sub = parser.add_subparsers(dest="provenance_command", metavar="ACTION", required=True)

    crate = sub.add_parser("crate", help="write RUN_DIR/ro-crate-metadata.json (+ provenance.prov.json)")
    crate.add_argument("run_dir", type=Path, help="the run folder (the workflow's outdir)")
    crate.add_argument("--workdir", type=Path, help="where Snakemake ran (holds .snakemake/); default: here")
    crate.add_argument("--snakefile", type=Path, help="workflow to snapshot into RUN_DIR/workflow/")
    crate.add_argument("--configfile", type=Path, action="append", help="config file(s) of the run (repeatable)")
    crate.set_defaults(func=_crate)

    prov = sub.add_parser("prov", help="PROV-JSON of a run's crate")
    prov.add_argument("run_dir", type=Path, help="the run folder (or any file in it)")
    prov.add_argument("-o", "--output", type=output_file(), help="write here instead of stdout")
    prov.set_defaults(func=_prov)

    check = sub.add_parser("verify", help="recompute hashes from OUTPUT back to its sources")
    check.add_argument("output", type=Path, help="an output file or folder of a run, or the run folder")
    check.add_argument("--workdir", type=Path, help="where the workflow ran, if moved (default: from the crate)")
    check.add_argument("--standalone", action="store_true", help="check only the provenance OUTPUT carries "
                       "(sources' and prior's sha256, its own chunks), even inside a run folder")
    check.add_argument("-q", "--quiet", action="store_true", help="only the summary line")
    check.set_defaults(func=_verify)
