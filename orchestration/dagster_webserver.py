"""The Dagster webserver on a Unix socket, reachable only through the UI's login proxy.

``dagster-webserver`` listens on TCP only, without a login and without a Host check, and it
runs GraphQL mutations sent by a plain GET: on any loopback port, one image tag on any web
page (sprayed over the ephemeral ports), a DNS-rebinding page or any local user could use it.
``siteline up`` therefore starts it with this launcher (``siteline dagster-webserver``): the
same app, workspace, instance settings and log levels as the ``dagster-webserver`` command
(``dagster_webserver/cli.py``), served by uvicorn on a Unix socket in a directory only the
owner can enter (``$SITELINE_HOME/run``, 0700). The proxy (:mod:`orchestration.ui_proxy`)
connects through that socket; no TCP port of its own is left.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ingestion.core.errors import SitelineError
from ingestion.core.home import ensure_home

SOCKET_NAME = "dagster-webserver.sock"
# sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
MAX_SOCKET_PATH = 107


def socket_path() -> Path:
    """``$SITELINE_HOME/run/dagster-webserver.sock``; makes the directory owner-only."""
    run = ensure_home() / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    run.chmod(0o700)  # an older or hand-made directory too: the socket itself is 0666
    path = run / SOCKET_NAME
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise SitelineError(
            f"the Dagster webserver's socket path {path} is longer than {MAX_SOCKET_PATH} "
            "bytes, the limit of a Unix socket path: set SITELINE_HOME to a shorter directory"
        )
    return path


def serve(socket: Path, workspace: Path) -> None:
    """Run the Dagster UI's webserver on the Unix socket ``socket`` until it is stopped."""
    import uvicorn
    from dagster._cli.utils import get_possibly_temporary_instance_for_cli
    from dagster._cli.workspace.cli_target import workspace_opts_to_load_target
    from dagster._core.telemetry import START_DAGSTER_WEBSERVER, log_action
    from dagster._core.telemetry_upload import uploading_logging_thread
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._utils.interrupts import setup_interrupt_handlers
    from dagster._utils.log import configure_loggers
    from dagster_shared.cli import WorkspaceOpts
    from dagster_webserver import cli as webserver_cli
    from dagster_webserver.app import create_app_from_workspace_process_context
    from dagster_webserver.version import __version__

    # dagster-webserver's defaults: --dagster-log-level info, --log-format colored,
    # --uvicorn-log-level warning, --code-server-log-level info, --live-data-poll-rate 2000.
    configure_loggers(formatter="colored", log_level="INFO")
    logger = logging.getLogger(webserver_cli.WEBSERVER_LOGGER_NAME)
    setup_interrupt_handlers()
    target = workspace_opts_to_load_target(WorkspaceOpts(workspace=[str(workspace)]))
    with contextlib.ExitStack() as stack:
        instance = stack.enter_context(
            get_possibly_temporary_instance_for_cli(cli_command="dagster-webserver", logger=logger)
        )
        instance.optimize_for_webserver(
            webserver_cli.DEFAULT_DB_STATEMENT_TIMEOUT,
            webserver_cli.DEFAULT_POOL_RECYCLE,
            webserver_cli.DEFAULT_POOL_MAX_OVERFLOW,
        )
        context = stack.enter_context(
            WorkspaceProcessContext(
                instance, version=__version__, read_only=False, workspace_load_target=target,
                code_server_log_level="info",
            )
        )  # fmt: skip
        app = create_app_from_workspace_process_context(
            context, "", 2000, lifespan=webserver_cli._lifespan
        )
        logger.info(f"Serving dagster-webserver on unix socket {socket}")
        log_action(instance, START_DAGSTER_WEBSERVER)
        with uploading_logging_thread():
            uvicorn.run(app, uds=str(socket), log_level="warning")
