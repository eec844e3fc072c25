"""`mfpo`: the command line of the platform on one machine.

    mfpo validate FILE...     check manifests as `kubectl apply` would, without running them
    mfpo run FILE.yaml        run an MFPORun manifest locally (the same file kubectl applies)
    mfpo retry FILE.yaml      give a Failed run's failed stages new attempts and continue it
    mfpo status FILE.yaml     show the local run's status: per stage, its time and results
    mfpo demo                 the quickstart: world + tiny captioner + the whole recipe + comparison
    mfpo crd                  print the generated CustomResourceDefinition

Exit codes: 0 succeeded, 1 failed, 2 bad manifest or missing inputs, 75 the run is held by
another `mfpo run`, 128+N stopped by signal N (130 for Ctrl-C: run the same command to continue).
Warnings (a key written twice in one mapping: kubectl keeps the last value silently; a merge key
`<<` that replaces a key written before it: kubectl keeps the merged value) go to stderr and do
not change the exit code, except with `mfpo validate --strict`. A file may hold a List of runs
(`kubectl get mfpo -o yaml`): `mfpo validate` checks each, `mfpo run` takes a List of one.
Relative `file://./` URIs in a manifest are relative to the manifest's directory.

Commands that need torch (the world generator, the bootstrap) run as subprocesses of the
runtime, so that this control-plane package never imports it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from importlib import metadata

from mfpo_core import api
from mfpo_core.storage import StorageError

from mfpo_operator.validation import ManifestError, check_file, read_manifest

EXIT_LOCKED = 75  # sysexits' EX_TEMPFAIL: try again once the other runner has ended
DEMO_HINT = "run `make demo` (or `mfpo demo`) first to create the world and the base model"


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's), as `--version` prints it."""
    try:
        return metadata.version("mfpo")
    except metadata.PackageNotFoundError:
        return "unknown (the mfpo package is not installed)"


def _warn(warnings: list[str]) -> None:
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)


def _load(path: str) -> api.MFPORun:
    """The manifest, its warnings printed first (kubectl would send it as read)."""
    manifest, warnings = read_manifest(path)
    _warn(warnings)
    return manifest


def _run(args: argparse.Namespace, *, retry: bool) -> int:
    from mfpo_core.contract import ExitCode
    from mfpo_core.ownership import OwnershipConflict

    from mfpo_operator.local import LocalRunner, MissingInputs, RunLocked

    manifest = _load(args.file)
    command = shlex.join(["mfpo", "run", args.file] + (["--no-progress"] if args.no_progress else []))
    progress = not args.no_progress and sys.stdout.isatty()
    runner = LocalRunner(manifest, progress=progress, command=command)
    try:
        status = runner.run(retry=retry)
    except MissingInputs as err:
        for line in err.missing:
            print(f"error: {line}", file=sys.stderr)
        if manifest.spec.data.format == "synthetic":
            print(f"  {DEMO_HINT}", file=sys.stderr)
        return 2
    except RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_LOCKED
    except OwnershipConflict as err:  # another run's storage prefix: bad input, as a stage says it
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    if runner.stopped_by is not None:
        return 128 + runner.stopped_by
    return 0 if status.phase == "Succeeded" else 1


def _cmd_run(args: argparse.Namespace) -> int:
    return _run(args, retry=args.retry)


def _cmd_retry(args: argparse.Namespace) -> int:
    return _run(args, retry=True)


def _cmd_status(args: argparse.Namespace) -> int:
    from mfpo_operator.local import LocalRunner

    manifest = _load(args.file)
    runner = LocalRunner(manifest, progress=False, command=shlex.join(["mfpo", "run", args.file]))
    print(runner.describe())
    runner_line = runner.runner_line()
    if runner_line:
        print(runner_line)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """Each file's MFPORuns checked as the API server would check them (CRD schema and CEL
    rules, what the Jobs they make would need, the size once applied) and its warnings."""
    invalid, warned, runs = False, False, 0
    for path in args.files:
        check = check_file("<stdin>", sys.stdin.read()) if path == "-" else check_file(path)
        _warn(check.warnings)
        warned |= bool(check.warnings)
        if check.error is not None:
            print(f"error: {check.error}", file=sys.stderr)
            invalid = True
            continue
        for doc in check.documents:
            item = f"{doc.where}: " if " items[" in doc.where else ""
            if doc.error is not None:
                print(f"error: {doc.error}", file=sys.stderr)
            elif doc.run is not None:
                print(f'{check.source}: {item}{doc.kind} "{doc.name}" is valid')
            else:
                print(f"{check.source}: {doc.where} ({doc.kind or 'no kind'}) skipped: not an {api.KIND}")
            runs += doc.run is not None or (doc.error is not None and doc.is_run)
            invalid |= doc.error is not None
    if runs == 0 and not invalid:
        print(f"error: no {api.KIND} in {', '.join(args.files)}", file=sys.stderr)
        invalid = True
    if warned and args.strict and not invalid:
        print("error: the warnings above fail the check (--strict)", file=sys.stderr)
    return 2 if invalid or (warned and args.strict) else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mfpo_operator.demo import run_demo

    return run_demo(
        compare=not args.no_compare,
        progress=not args.no_progress and sys.stdout.isatty(),
        tracking_uri=args.tracking_uri,
    )


def _cmd_crd(_: argparse.Namespace) -> int:
    from mfpo_operator.crd import render_crd_yaml

    print(render_crd_yaml(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfpo", description="Modality-Fair Preference Optimization runs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    no_progress = "no progress bars (also when stdout is not a terminal)"

    validate = sub.add_parser(
        "validate",
        help="check manifests as kubectl apply would, without running them",
        description=(
            "Check each MFPORun of the files as the API server would (the CRD's schema and rules, "
            "what the stage Jobs it makes need, its size once applied), with kubectl's YAML rules; "
            "the items of a List too. Other kinds in the files are skipped. Exit 0 when every MFPORun "
            "is valid, 2 otherwise."
        ),
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML manifest(s); - reads stdin")
    validate.add_argument(
        "--strict", action="store_true", help="warnings (a key written twice, a merge key over a key) fail the check too"
    )
    validate.set_defaults(func=_cmd_validate)

    run = sub.add_parser("run", help="run an MFPORun manifest on this machine")
    run.add_argument("file", help="MFPORun YAML manifest")
    run.add_argument("--no-progress", action="store_true", help=no_progress)
    run.add_argument(
        "--retry", action="store_true",
        help="if the run Failed, give its failed stages new attempts (the operator's mfpo.dev/retry)",
    )  # fmt: skip
    run.set_defaults(func=_cmd_run)

    retry = sub.add_parser("retry", help="retry a Failed local run (same as `mfpo run --retry`)")
    retry.add_argument("file", help="MFPORun YAML manifest")
    retry.add_argument("--no-progress", action="store_true", help=no_progress)
    retry.set_defaults(func=_cmd_retry)

    status = sub.add_parser("status", help="show a local run's status")
    status.add_argument("file", help="MFPORun YAML manifest")
    status.set_defaults(func=_cmd_status)

    demo = sub.add_parser("demo", help="the quickstart on the synthetic world")
    demo.add_argument("--no-compare", action="store_true", help="skip the text-only DPO comparison")
    demo.add_argument("--no-progress", action="store_true", help=no_progress)
    demo.add_argument(
        "--tracking-uri", metavar="URL",
        help="log both runs to this MLflow tracking server (e.g. http://127.0.0.1:5000), experiment mfpo-demo",
    )  # fmt: skip
    demo.set_defaults(func=_cmd_demo)

    crd = sub.add_parser("crd", help="print the generated CustomResourceDefinition")
    crd.set_defaults(func=_cmd_crd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return code
    except ManifestError as err:
        _warn(err.warnings)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StorageError as err:  # the run's state is unreachable: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # a bad MFPO_THREADS / OMP_NUM_THREADS (named in the message)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`mfpo status x.yaml | head -1`): stop quietly, as `cat` does.
        # Python's documented recipe: point stdout at devnull so the exit flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
