"""The process environment the product sets up for its libraries."""

import os
import subprocess
import sys

RESOLVE = (
    "from dlt.common.configuration.resolve import resolve_configuration\n"
    "from dlt.common.configuration.specs import RuntimeConfiguration\n"
    "print(resolve_configuration(RuntimeConfiguration()).dlthub_telemetry)\n"
)


def dlt_telemetry(prelude: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME__DLTHUB_TELEMETRY"}
    env["DO_NOT_TRACK"] = "1"  # which dlt ignores
    result = subprocess.run(
        [sys.executable, "-c", prelude + RESOLVE], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_dlt_sends_no_usage_telemetry_from_siteline_pipelines():
    assert dlt_telemetry("import dlt\n") == "True"  # dlt's default, DO_NOT_TRACK or not
    assert dlt_telemetry("import ingestion.pipelines\n") == "False"
