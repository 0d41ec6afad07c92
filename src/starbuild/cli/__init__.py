"""The `starbuild` command: `why` traces one file through the build, `report` compares two experiments.

Both read what the build wrote (data/, metrics/, plots/, git and DVC's experiment refs) and never
write to the project. Errors are one line naming the fix: exit status 2 for a usage error, 1 when
what was asked for is not there (an unknown blob or revision, a stage output not built yet).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from starbuild.core import layout

# Exit statuses: argparse also exits with USAGE on a bad command line.
OK, NOT_FOUND, USAGE = 0, 1, 2
PROG = "starbuild"


class CliError(Exception):
    """A failure the user can fix; `str()` is the one line printed, `status` the exit status."""

    status = NOT_FOUND


class UsageError(CliError):
    """The command line is wrong (e.g. a malformed blob id)."""

    status = USAGE


class NotFound(CliError):
    """What was asked for does not exist (a blob, a revision, a stage output not built yet)."""

    status = NOT_FOUND


def project_root(given: Path | None) -> Path:
    """`--root` if given, else the nearest directory at or above the working directory holding dvc.yaml."""
    if given is not None:
        if not given.is_dir():
            raise UsageError(f"--root {given} is not a directory; pass the DVC project's root")
        return given.resolve()
    here = Path.cwd().resolve()
    return next((d for d in (here, *here.parents) if (d / layout.DVC_YAML).is_file()), here)


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout."""
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _why(args: argparse.Namespace) -> int:
    from starbuild.cli import why

    steps = why.explain(project_root(args.root), args.blob_id)
    if args.json:
        print_json([step.as_dict() for step in steps])
    else:
        sys.stdout.write(why.render(steps))
    return why.exit_status(steps)


def _report(args: argparse.Namespace) -> int:
    from starbuild.cli import compare

    root = project_root(args.root)
    if not args.compare:
        return compare.show_report_paths(root, args.json)
    old, new = args.compare
    result = compare.compare(root, old, new)
    if args.json:
        print_json(result)
    else:
        compare.render(result, changed_only=args.changed)
    return OK


WHY_HELP = """\
Trace one file through the build in the project at --root: for every repository/path holding the
blob, say which stage dropped it and why (the filter rule(s), the duplicate it was folded into, the
benchmark it contained) or, when it survived, which split of data/docs it is in."""

WHY_EPILOG = """\
BLOB_ID is the file's sha1 (the `blob_id` column), its git blob id (`content_id`, sha1_git) or its
SWHID swh:1:cnt:<sha1_git>; any case. Example:
  starbuild why 3b18e512dba79e4c8300dd08aeb37f8e728b8dad
  starbuild why swh:1:cnt:94a9ed024d3859793618152ea559a168bbcbb5e2 --json"""

REPORT_HELP = """\
Without --compare: where the report stage wrote its report (reports/). With --compare OLD NEW:
every scalar metric of both revisions with the change, then the filter funnel of each side by rule."""

REPORT_EPILOG = """\
OLD and NEW are anything `dvc metrics diff` accepts: a commit, branch or tag, an experiment name
(`dvc exp show` lists them) or `workspace` for the files on disk. Example:
  starbuild report --compare main exp-low-alpha-03
  starbuild report --compare HEAD~1 HEAD --json"""


def build_parser() -> argparse.ArgumentParser:
    """The command line: `why` and `report`, each with --root and --json."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect a starbuild build: where a file went, and how two experiments differ.",
        epilog="Run `starbuild COMMAND --help` for a command's options.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    why = commands.add_parser("why", help="where one file (by blob id) went through the build, and why",
                              description=WHY_HELP, epilog=WHY_EPILOG, formatter_class=formatter)
    why.add_argument("blob_id", metavar="BLOB_ID", help="sha1 (blob_id), sha1_git (content_id) or swh:1:cnt:<sha1_git>")
    why.set_defaults(run=_why)

    report = commands.add_parser("report", help="the report's location, or two experiments' metrics side by side",
                                 description=REPORT_HELP, epilog=REPORT_EPILOG, formatter_class=formatter)
    report.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                        help="two revisions or experiment names to compare")
    report.add_argument("--changed", action="store_true", help="list only the metrics that differ (not with --json)")
    report.set_defaults(run=_report)

    for sub in (why, report):
        sub.add_argument("--root", type=Path, default=None,
                         help="the DVC project's root (default: the nearest directory with dvc.yaml above the cwd)")
        sub.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return err.status
