"""`mfpo` with the stage program replaced by the test double fake_stage.py: the real CLI and
local runner in a real process (signals, exit codes, locks), with stages that run in seconds."""

import sys
from pathlib import Path

from mfpo_operator import cli, local

FAKE_STAGE = [sys.executable, str(Path(__file__).with_name("fake_stage.py"))]
local.LocalRunner.__init__.__kwdefaults__["stage_command"] = FAKE_STAGE

if __name__ == "__main__":
    sys.exit(cli.main())
