"""`mfpo`: the command line of the platform on one machine.

    mfpo run FILE.yaml        run an MFPORun manifest locally (the same file kubectl applies)
    mfpo status FILE.yaml     show the local run's status
    mfpo demo                 the quickstart: world + tiny captioner + the whole recipe + comparison
    mfpo crd                  print the generated CustomResourceDefinition

Commands that need torch (the world generator, the bootstrap) run as subprocesses of the
runtime, so that this control-plane package never imports it.
"""

from __future__ import annotations

import argparse
import sys

from mfpo_core.storage import StorageError

from mfpo_operator.validation import ManifestError, load_manifest


def _cmd_run(args: argparse.Namespace) -> int:
    from mfpo_operator.local import LocalRunner

    try:
        manifest = load_manifest(args.file)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runner = LocalRunner(manifest, progress=not args.no_progress)
    try:
        status = runner.run()
    except StorageError as err:  # the run's state is unreachable: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0 if status.phase == "Succeeded" else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from mfpo_operator.local import LocalRunner

    manifest = load_manifest(args.file)
    try:
        print(LocalRunner(manifest, progress=False).describe())
    except StorageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mfpo_operator.demo import run_demo

    return run_demo(compare=not args.no_compare)


def _cmd_crd(_: argparse.Namespace) -> int:
    from mfpo_operator.crd import render_crd_yaml

    print(render_crd_yaml(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfpo", description="Modality-Fair Preference Optimization runs.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an MFPORun manifest on this machine")
    run.add_argument("file", help="MFPORun YAML manifest")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    status = sub.add_parser("status", help="show a local run's status")
    status.add_argument("file", help="MFPORun YAML manifest")
    status.set_defaults(func=_cmd_status)

    demo = sub.add_parser("demo", help="the quickstart on the synthetic world")
    demo.add_argument("--no-compare", action="store_true", help="skip the text-only DPO comparison")
    demo.set_defaults(func=_cmd_demo)

    crd = sub.add_parser("crd", help="print the generated CustomResourceDefinition")
    crd.set_defaults(func=_cmd_crd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
