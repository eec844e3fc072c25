"""A test double of `mfpo-stage`: obeys the stage contract's outputs and exit codes without any
training, so the local runner's control flow is tested in seconds.

Behaviour per stage attempt comes from $FAKE_STAGE_SCRIPT (JSON: {"<stage>": ["ok" | "fail" |
"bad" | "hang", ...]} indexed by attempt-1, default "ok"). Each run appends "<stage>:<attempt>"
to $FAKE_STAGE_TRACE (and its command-line flags to $FAKE_STAGE_TRACE.flags), and a successful
one writes the stage's result document like the real one.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from mfpo_core import storage
from mfpo_core.contract import ExitCode, StageConfig, TerminationSummary, result_uri


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    config = StageConfig.from_json(Path(args.config).read_text())
    script = json.loads(os.environ.get("FAKE_STAGE_SCRIPT", "{}"))
    behaviours = script.get(config.stage, [])
    behaviour = behaviours[config.attempt - 1] if config.attempt <= len(behaviours) else "ok"
    with open(os.environ["FAKE_STAGE_TRACE"], "a") as trace:
        trace.write(f"{config.stage}:{config.attempt}:{config.shard_index}\n")
    with open(os.environ["FAKE_STAGE_TRACE"] + ".flags", "a") as flags:
        flags.write(" ".join(a for a in sys.argv[1:] if a.startswith("--no-")) + "\n")
    log = Path(os.environ["MFPO_TERMINATION_LOG"])

    def finish(status: str, code: int, message: str | None = None, metrics=None) -> None:
        log.write_text(TerminationSummary(stage=config.stage, status=status, message=message, metrics=metrics or {}).encode())
        sys.exit(code)

    if behaviour == "fail":
        finish("retryable", 1, "simulated crash")
    if behaviour == "bad":
        finish("bad-input", ExitCode.BAD_INPUT, "data.uri: record 7 has no image")
    if behaviour == "hang":
        signal.signal(signal.SIGTERM, lambda *_: finish("preempted", ExitCode.PREEMPTED, "checkpoint saved"))
        Path(os.environ["FAKE_STAGE_TRACE"] + ".hanging").write_text("1")
        time.sleep(60)
        finish("retryable", 1, "hang timed out")
    shard = (config.shard_index, config.spec.image_preference.shards) if config.stage == "datagen" else None
    metrics = {"records": 10.0} if config.stage == "datagen" else {}
    if config.stage == "eval":
        metrics = {"eval.base.synthetic.chair_s": 0.5, "eval.align-1.synthetic.chair_s": 0.25}
    storage.write_json({"stage": config.stage}, result_uri(config.run_uri, config.stage, shard))
    finish("succeeded", 0, metrics=metrics)


if __name__ == "__main__":
    main()
