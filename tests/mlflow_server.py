"""A real MLflow tracking server for the tracking tests: `mlflow server` from PyPI (installed by
`make tools` into its own venv, .tools/mlflow) on 127.0.0.1, runs in SQLite, artifacts proxied
by the server into a bucket of moto's S3 server.

A plain module (not conftest) so that tests import it by name; the name is unique in tests/.
The server runs in its own process group: `stop()` ends it and every worker it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLFLOW = REPO / ".tools" / "mlflow" / "bin" / "mlflow"
BUCKET = "mlflow-artifacts"
START_TIMEOUT = 180.0  # seconds; the server imports Flask, FastAPI, SQLAlchemy and migrates the db


class MlflowServer:
    def __init__(self, workdir: Path, port: int, s3_endpoint: str, access_key: str, secret_key: str) -> None:
        self.workdir = workdir
        self.port = port
        self.uri = f"http://127.0.0.1:{port}"
        self.s3_endpoint = s3_endpoint
        self.credentials = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ, **self.credentials,
            "MLFLOW_S3_ENDPOINT_URL": f"http://{self.s3_endpoint}",
            "AWS_DEFAULT_REGION": "us-east-1",
            # MLflow 3's server starts a job runner with a dozen consumer processes by default
            # (GenAI jobs): nothing here uses them.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }  # fmt: skip
        command = [
            str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.workdir}/mlflow.db",
            "--artifacts-destination", f"s3://{BUCKET}/artifacts",
        ]  # fmt: skip
        log = (self.workdir / "server.log").open("ab")
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.process.returncode}: {self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not up after {START_TIMEOUT:.0f}s: {self.log_tail()}")

    def stop(self) -> None:
        """End the server and its workers (its process group), waiting until they are gone."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None
        deadline = time.monotonic() + 30
        while self.answers() and time.monotonic() < deadline:  # workers outliving the CLI
            time.sleep(0.2)

    def answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.uri}/health", timeout=2).read()
            return True
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def wire_params(doc, prefix=""):
    """A manifest's spec as dotted keys: the reference the logged params are held to."""
    out = {}
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        if isinstance(value, (dict, list)) and value:
            out.update(wire_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out
