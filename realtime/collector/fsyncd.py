"""The collector's fsync helper: a small process that makes landing segments durable.

The collector's event loop writes each group of accepted events to the open segment itself
(a ``write`` to the page cache costs microseconds) and asks this process to ``fdatasync``
it, so the loop never blocks on the disk. A thread would do the same without a process,
but a thread needs the interpreter lock to report back, and under load waiting for that
lock cost more than the sync (benchmarks/RESULTS.md).

Protocol, over one ``SOCK_SEQPACKET`` socket (argv[1] is its descriptor):

- request ``S``: sync the current file; the message may carry a new file descriptor
  (``SCM_RIGHTS``), which becomes the current file;
- reply ``K`` when the sync succeeded, ``E<message>`` when it failed.

Standard library only, started with ``python -I``; it exits when the collector goes away
(end of file on the socket), also after a ``kill -9``; SIGINT and SIGTERM do not end it.
"""

from __future__ import annotations

import os
import signal
import socket
import sys


def serve(sock: socket.socket) -> None:
    fd = None
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(sock, 64, 4)
        except OSError:
            return
        if not message:
            return  # the collector closed its end (or died)
        for extra in fds[1:]:
            os.close(extra)
        if fds:
            if fd is not None:
                os.close(fd)
            fd = fds[0]
        if fd is None:
            reply = b"Eno file to sync"
        else:
            try:
                os.fdatasync(fd)
                reply = b"K"
            except OSError as exc:
                reply = b"E" + str(exc).encode()[:500]
        try:
            sock.send(reply)
        except OSError:
            return


if __name__ == "__main__":
    # Its life is the socket's: a Ctrl-C or a stop sent to the collector's process group must
    # not end it while the collector still syncs its last segments on the way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(socket.socket(fileno=int(sys.argv[1])))
