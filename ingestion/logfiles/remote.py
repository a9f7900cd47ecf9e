"""Where logfiles come from: local files, HTTP(S), FTP(S) and SFTP, behind one interface.

``list()`` names the files a source URL matches (its file part may be a glob, except over
HTTP, which has no listing); ``read(file, offset)`` streams a file's bytes from ``offset`` —
HTTP ``Range``, FTP ``REST``, SFTP seek — so a pull transfers only what is new. Credentials
come from environment variables named in ``sites.yml``. HTTPS and FTPS servers must show a
certificate the system's or certifi's CAs trust, or the source's ``tls_ca_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ftplib
import glob
import logging
import os
import posixpath
import random
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ingestion.core.settings import settings

CHUNK = 1 << 20
log = logging.getLogger("siteline.logfiles")


class PullError(RuntimeError):
    """A source could not be listed or read; the message names the source and the cause."""


class TransientError(PullError):
    """A failure worth another try (a dropped connection, HTTP 5xx or 429, FTP 4xx)."""


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verified TLS: the system's CAs (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured) and
    certifi's, plus ``ca_file`` for a server whose certificate a private CA signed."""
    import certifi

    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as exc:
            message = f"tls_ca_file {ca_file}: not readable as PEM certificates: {exc}"
            raise PullError(message) from None
    return context


UNTRUSTED = "the server's TLS certificate is not trusted (for a private CA set tls_ca_file)"


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path on the server (or the URL for HTTP)
    size: int | None


class LocalRemote:
    def __init__(self, url: str) -> None:
        self.pattern = unquote(urlsplit(url).path) if url.startswith("file://") else url

    def list(self) -> list[RemoteFile]:
        names = sorted(glob.glob(self.pattern)) if glob.has_magic(self.pattern) else [self.pattern]
        return [RemoteFile(n, os.path.getsize(n)) for n in names if os.path.isfile(n)]

    def read(self, f: RemoteFile, offset: int) -> Iterator[bytes]:
        with open(f.name, "rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(CHUNK):
                yield chunk

    def close(self) -> None:
        pass


class HttpRemote:
    def __init__(
        self, url: str, username: str | None, password: str | None, ca_file: str | None = None
    ) -> None:
        import httpx

        if glob.has_magic(urlsplit(url).path):
            raise PullError(f"{url}: HTTP has no file listing; name each file without wildcards")
        self.url = url
        auth = (username, password or "") if username else None
        verify = tls_context(ca_file) if url.lower().startswith("https:") else True
        self.client = httpx.Client(auth=auth, timeout=60, follow_redirects=True, verify=verify)

    def list(self) -> list[RemoteFile]:
        response = self.client.head(self.url)
        if response.status_code == 404:
            return []
        _check_status(self.url, response.status_code)
        length = response.headers.get("content-length")
        return [RemoteFile(self.url, int(length) if length and length.isdigit() else None)]

    def read(self, f: RemoteFile, offset: int) -> Iterator[bytes]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self.client.stream("GET", f.name, headers=headers) as response:
            if response.status_code == 416:  # nothing after offset
                return
            _check_status(f.name, response.status_code)
            skip = offset if response.status_code == 200 else 0  # no Range support: skip here
            for chunk in response.iter_bytes(CHUNK):
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                yield chunk

    def close(self) -> None:
        self.client.close()


def _check_status(url: str, status: int) -> None:
    if status in (408, 429) or status >= 500:
        raise TransientError(f"{url}: HTTP {status}")
    if status >= 400:
        raise PullError(f"{url}: HTTP {status}")


class FtpRemote:
    def __init__(
        self, url: str, username: str | None, password: str | None, ca_file: str | None = None
    ) -> None:
        parts = urlsplit(url)
        tls = parts.scheme == "ftps"  # explicit TLS (AUTH TLS), control and data channels
        self.ftp = ftplib.FTP_TLS(context=tls_context(ca_file)) if tls else ftplib.FTP()
        try:
            self.ftp.connect(parts.hostname, parts.port or 21, timeout=30)
            self.ftp.login(username or "anonymous", password or "")
            if tls:
                self.ftp.prot_p()
        except ssl.SSLCertVerificationError as exc:  # stays so: no use retrying
            raise PullError(f"{parts.scheme}://{parts.hostname}: {UNTRUSTED}: {exc}") from exc
        except ftplib.error_perm as exc:  # wrong login and the like: no use retrying
            raise PullError(f"{parts.scheme}://{parts.hostname}: {exc}") from exc
        except (OSError, EOFError, ftplib.Error) as exc:
            raise TransientError(f"{parts.scheme}://{parts.hostname}: {exc}") from exc
        self.ftp.voidcmd("TYPE I")
        self.pattern = unquote(parts.path)

    def list(self) -> list[RemoteFile]:
        folder, pattern = posixpath.split(self.pattern)
        try:
            names = self.ftp.nlst(folder or "/")
        except ftplib.error_perm:
            names = []
        self.ftp.voidcmd("TYPE I")  # NLST left the session in ASCII mode; SIZE needs binary
        files = []
        for name in sorted(names):
            full = name if name.startswith("/") else posixpath.join(folder, name)
            if fnmatch.fnmatch(posixpath.basename(full), pattern):
                try:
                    files.append(RemoteFile(full, self.ftp.size(full)))
                except ftplib.error_perm:
                    continue  # a directory
        return files

    def read(self, f: RemoteFile, offset: int) -> Iterator[bytes]:
        self.ftp.voidcmd("TYPE I")  # byte offsets (REST) are only meaningful in binary mode
        conn = self.ftp.transfercmd(f"RETR {f.name}", rest=offset or None)
        try:
            while chunk := conn.recv(CHUNK):
                yield chunk
        finally:
            conn.close()
            with contextlib.suppress(ftplib.Error):  # "426 aborted" after reading a head only
                self.ftp.voidresp()

    def close(self) -> None:
        try:
            self.ftp.quit()
        except (OSError, ftplib.Error):
            self.ftp.close()


class SftpRemote:
    """asyncssh driven from a private event loop, so callers stay synchronous."""

    def __init__(self, url: str, username: str | None, password: str | None, key: str | None):
        import asyncssh

        parts = urlsplit(url)
        self.loop = asyncio.new_event_loop()
        options = {}
        known_hosts = settings().ssh_known_hosts
        if known_hosts:  # else ~/.ssh/known_hosts is checked
            options["known_hosts"] = str(known_hosts)
        if key:
            options["client_keys"] = [key]
        try:
            self.conn = self._run(asyncssh.connect(
                parts.hostname, parts.port or 22, username=username or parts.username,
                password=password, **options,
            ))  # fmt: skip
            self.sftp = self._run(self.conn.start_sftp_client())
        except asyncssh.PermissionDenied as exc:
            self.loop.close()
            raise PullError(f"sftp://{parts.hostname}: {exc}") from exc
        except (OSError, asyncssh.Error) as exc:
            self.loop.close()
            raise TransientError(f"sftp://{parts.hostname}: {exc}") from exc
        self.pattern = unquote(parts.path)

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    def list(self) -> list[RemoteFile]:
        names = (
            self._run(self.sftp.glob(self.pattern))
            if glob.has_magic(self.pattern)
            else [self.pattern]
        )
        files = []
        for name in sorted(names):
            try:
                attrs = self._run(self.sftp.stat(name))
            except OSError:
                continue
            if attrs.type == 1:  # regular file
                files.append(RemoteFile(name, attrs.size))
        return files

    def read(self, f: RemoteFile, offset: int) -> Iterator[bytes]:
        handle = self._run(self.sftp.open(f.name, "rb"))
        try:
            position = offset
            while True:
                chunk = self._run(handle.read(CHUNK, position))
                if not chunk:
                    return
                position += len(chunk)
                yield chunk
        finally:
            self._run(handle.close())

    def close(self) -> None:
        self.sftp.exit()
        self.conn.close()
        self._run(self.conn.wait_closed())
        self.loop.close()


def _connect(url: str, username: str | None, password: str | None, key: str | None,
             ca_file: str | None = None):  # fmt: skip
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme == "file":
        return LocalRemote(url)
    if scheme in ("http", "https"):
        return HttpRemote(url, username, password, ca_file)
    if scheme in ("ftp", "ftps"):
        return FtpRemote(url, username, password, ca_file)
    if scheme == "sftp":
        return SftpRemote(url, username, password, key)
    raise PullError(f"{url}: scheme '{scheme}' is not supported")


def _transient(scheme: str) -> tuple[type[BaseException], ...]:
    """The errors worth another try; asyncssh's only for SFTP (its import is slow)."""
    import httpx

    errors = (
        TransientError, OSError, EOFError, ftplib.error_temp, ftplib.error_reply,
        httpx.TransportError,
    )  # fmt: skip
    if scheme != "sftp":
        return errors
    import asyncssh

    return (*errors, asyncssh.ConnectionLost, asyncssh.DisconnectError)


_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _permanent(exc: BaseException) -> str | None:
    """Why a failure will not pass by trying again (it, or what caused it, is a missing
    file, a refused permission or an untrusted certificate); None when it may pass."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return f"{UNTRUSTED}: {exc}"
        if isinstance(exc, _PERMANENT):
            return str(exc)
        exc, seen = exc.__cause__, seen + 1  # what it was raised from, not what it met
    return None


class Retrying:
    """A remote that retries what fails for a passing reason (a dropped connection, a
    timeout, HTTP 5xx/429, FTP 4xx), reconnecting, with exponential backoff and jitter:
    ``retries`` more tries after ``backoff``, 2 x ``backoff``, 4 x ... seconds
    (``SITELINE_PULL_RETRIES``, default 4; ``SITELINE_PULL_BACKOFF_SECONDS``, default 1).
    A read that breaks off resumes where it stopped (Range, REST, seek). What keeps failing
    ends as a :class:`PullError` naming the source, the attempts and the last cause."""

    def __init__(self, url: str, connect, retries: int | None = None, backoff=None) -> None:
        self.url = url
        self.connect = connect
        self.retries = retries if retries is not None else settings().pull_retries
        self.backoff = backoff if backoff is not None else settings().pull_backoff_seconds
        self.remote = None
        self.retried = 0  # tries that failed and were repeated (for the pull report)
        self.transient = _transient(urlsplit(url).scheme)

    def _open(self):
        if self.remote is None:
            self.remote = self.connect()
        return self.remote

    def _failed(self, what: str, attempt: int, exc: BaseException) -> None:
        if (reason := _permanent(exc)) is not None:  # stays so: no use retrying
            raise PullError(f"{self.url}: {what} failed: {reason}") from exc
        if self.remote is not None:
            with contextlib.suppress(Exception):
                self.remote.close()
            self.remote = None
        if attempt >= self.retries:
            raise PullError(f"{self.url}: {what} failed {attempt + 1} times; last: {exc}") from exc
        self.retried += 1
        delay = self.backoff * 2**attempt * random.uniform(0.5, 1.5)
        log.warning("%s: %s failed (%s); retrying in %.1f s", self.url, what, exc, delay)
        time.sleep(delay)

    def list(self) -> list[RemoteFile]:
        for attempt in range(self.retries + 1):
            try:
                return self._open().list()
            except self.transient as exc:
                self._failed("listing", attempt, exc)
        raise AssertionError("unreachable")

    def read(self, f: RemoteFile, offset: int) -> Iterator[bytes]:
        done, attempt = 0, 0
        while True:
            try:
                for chunk in self._open().read(f, offset + done):
                    done += len(chunk)
                    attempt = 0  # progress: the next failure starts a new count
                    yield chunk
                return
            except self.transient as exc:
                self._failed(f"reading {f.name} at byte {offset + done}", attempt, exc)
                attempt += 1

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
            self.remote = None


def open_remote(
    url: str,
    username: str | None = None,
    password: str | None = None,
    key: str | None = None,
    ca_file: str | None = None,
) -> Retrying:
    """The remote for a source URL, retrying passing failures (see :class:`Retrying`)."""
    return Retrying(url, lambda: _connect(url, username, password, key, ca_file))


def credentials(source) -> tuple[str | None, str | None, str | None]:
    """(username, password, key path) from the variables a source names; a named but unset
    variable is an error that names it."""
    values = []
    for attr in ("username_env", "password_env", "private_key_env"):
        name = getattr(source, attr)
        if name and name not in os.environ:
            raise PullError(f"logfile source '{source.name}': {attr} names ${name}, which is unset")
        values.append(os.environ.get(name) if name else None)
    if values[2] and not Path(values[2]).exists():
        raise PullError(f"logfile source '{source.name}': SSH key {values[2]} does not exist")
    return values[0], values[1], values[2]
