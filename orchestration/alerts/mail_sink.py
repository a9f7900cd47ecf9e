"""The demo's mail sink: an SMTP server on loopback (aiosmtpd) that keeps every mail it
receives as an ``.eml`` file under ``$SITELINE_HOME/mail/``, so that someone trying Siteline
can open the alert mails without a mail server. ``siteline up`` runs it (port
``SITELINE_MAIL_SINK_PORT``, 2525); ``siteline mail-sink`` runs it alone. It accepts mail
from anyone on this machine and delivers it nowhere: not a mail server.

Open a mail: double-click the .eml (any mail program), or ``python -m email`` style tools.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

HOST = "127.0.0.1"


def mail_dir() -> Path:
    """``$SITELINE_HOME/mail`` (created)."""
    from ingestion.core.home import data_dir

    return data_dir("mail")


class SaveToFolder:
    """aiosmtpd handler: each message's bytes as received, written whole (a temporary name,
    then renamed: a reader never sees half a mail) to ``<UTC time>-<n>.eml``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._numbers = count(1)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{next(self._numbers)}.eml"
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        # who it was for: the envelope says it, a Bcc header does not
        header = f"X-Siteline-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(header + data)
        os.replace(partial, path)
        return "250 OK: kept as " + path.name


def controller(folder: Path, port: int, host: str = HOST):
    """The SMTP server (not started): ``.start()``, ``.stop()``."""
    from aiosmtpd.controller import Controller

    return Controller(SaveToFolder(folder), hostname=host, port=port)


@contextmanager
def running(port: int | None = None, folder: Path | None = None):
    """The sink in this process while the block runs, unless something already listens on
    the port (``siteline up``'s sink): for a command that sends the demo's mails without the
    services running. Yields the folder the mails land in."""
    from ingestion.core.settings import settings
    from orchestration.supervisor import port_free

    port = port or settings().mail_sink_port or 2525
    folder = folder or mail_dir()
    if not port_free(port):
        yield folder
        return
    server = controller(folder, port)
    server.start()
    try:
        yield folder
    finally:
        server.stop()


def serve(port: int, folder: Path | None = None, say=print) -> None:
    """Run the sink in the foreground until SIGTERM or Ctrl-C."""
    folder = folder or mail_dir()
    server = controller(folder, port)
    server.start()
    say(f"mail sink: smtp://{HOST}:{port}, mails kept in {folder}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main() -> None:
    """``python -m orchestration.alerts.mail_sink [--port N]`` (what ``siteline up`` runs)."""
    import argparse

    from ingestion.core.settings import settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    serve(args.port or settings().mail_sink_port or 2525, args.folder,
          say=lambda line: print(line, flush=True))  # fmt: skip


if __name__ == "__main__":
    main()
