"""Real servers for tests: a collector process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def collector(
    landing: Path, sites_file: Path | None = None, port: int | None = None, **env_overrides: str
):
    """Run `siteline collector` as its own process; yields its base URL."""
    port = port or free_port()
    env = {
        **os.environ,
        "SITELINE_LANDING_DIR": str(landing),
        "SITELINE_SEGMENT_MAX_SECONDS": "1",
        "SITELINE_LANDING_TOKEN": "test-landing-token",
        "SITELINE_COLLECTOR_ID": "testcollector",
        **env_overrides,
    }
    if sites_file:
        env["SITELINE_SITES_FILE"] = str(sites_file)
    proc = start_collector(port, env)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)


def start_collector(port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "collector", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("collector did not start within 30 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- logfile servers ------------------------------------------------------------------------------


def tls_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, public_key, signing_key, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Siteline test CA")])
    ca = certificate(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    server = certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name,
        key.public_key(), ca_key, False, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    return paths


def http_file_server(root: Path, trouble: dict | None = None, tls: tuple | None = None):
    """A static HTTP server with Range support (as nginx/Apache serve files).

    ``trouble`` (shared, changeable while serving) makes it misbehave like a real server on a
    bad day: ``unavailable`` answers that many requests with 503; ``cut_after`` breaks the
    next body (after ``skip_gets`` more) off after that many bytes: the connection drops. It
    records the ``ranges`` asked for. ``tls`` (cert.pem, key.pem) serves HTTPS."""
    import functools
    import http.server
    import re
    import ssl
    import threading

    trouble = trouble if trouble is not None else {}

    class RangeHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):
            path = Path(self.translate_path(self.path))
            if trouble.get("unavailable"):
                trouble["unavailable"] -= 1
                self.send_error(503)
                return None
            if not path.is_file():
                self.send_error(404)
                return None
            data = path.read_bytes()
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                trouble.setdefault("ranges", []).append(start)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return None
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                data = data[start:]
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            import io

            cut = None
            if self.command == "GET" and "cut_after" in trouble:
                if trouble.get("skip_gets"):
                    trouble["skip_gets"] -= 1
                else:
                    cut = trouble.pop("cut_after")
            if cut is not None and cut < len(data):
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-body
                return None
            return io.BytesIO(data)

    port = free_port()
    handler = functools.partial(RangeHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"{'https' if tls else 'http'}://127.0.0.1:{port}", server.shutdown


def ftp_server(root: Path, user: str, password: str, tls: tuple | None = None):
    """pyftpdlib; ``tls`` (cert.pem, key.pem) makes it FTPS (explicit, control and data
    channels both required)."""
    import threading

    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import ThreadedFTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(root), perm="elr")
    attrs: dict = {"authorizer": authorizer}
    if tls:
        attrs.update(certfile=str(tls[0]), keyfile=str(tls[1]), tls_control_required=True,
                     tls_data_required=True)  # fmt: skip
    handler = type("Handler", (TLS_FTPHandler if tls else FTPHandler,), attrs)
    port = free_port()
    server = ThreadedFTPServer(("127.0.0.1", port), handler, ioloop=IOLoop())
    # pyftpdlib keeps the stop flag on the class: an earlier server's late shutdown would
    # stop this one's sessions as they open. Each server gets its own.
    server._exit = threading.Event()
    threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True).start()
    return f"{'ftps' if tls else 'ftp'}://127.0.0.1:{port}", server.close_all


def sftp_server(user: str, password: str, known_hosts: Path):
    """An asyncssh SFTP server with password auth; writes its host key to ``known_hosts``."""
    import asyncio
    import threading

    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    port = free_port()
    known_hosts.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username):
            return True

        def password_auth_supported(self):
            return True

        def validate_password(self, username, given):
            return username == user and given == password

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(loop)

        async def start():
            holder["server"] = await asyncssh.listen(
                "127.0.0.1", port, server_host_keys=[key], server_factory=Server,
                sftp_factory=True,
            )  # fmt: skip
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)

    def shutdown():
        loop.call_soon_threadsafe(holder["server"].close)
        loop.call_soon_threadsafe(loop.stop)

    return f"sftp://127.0.0.1:{port}", shutdown


def isolated_pipeline(name: str, dataset: str, warehouse: str, state_dir: Path):
    """A dlt pipeline into its own dataset of the test warehouse (isolated from the assets')."""
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.postgres(credentials=warehouse),
        dataset_name=dataset,
        pipelines_dir=str(state_dir / "dlt"),
    )


class TcpProxy:
    """A loopback TCP forwarder: the engine reaches the warehouse through it, and closing it
    makes the warehouse unreachable (a network outage) without stopping the server."""

    def __init__(self, host: str, port: int) -> None:
        import threading

        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Cut every connection and refuse new ones."""
        self.open = False
        self.listener.close()
        for s in self.sockets:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()


# -- receivers of notifications (alerts) ----------------------------------------------------------


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on a loopback port that keeps what it receives:
    ``messages`` holds (envelope recipients, the parsed message). With ``user``/``password``
    it requires that login (AUTH PLAIN/LOGIN over plain SMTP, as a local relay may). ``stop``
    and ``start`` again on the same port: a mail server that goes down and comes back."""

    def __init__(self, port: int | None = None, user: str | None = None,
                 password: str | None = None) -> None:  # fmt: skip
        self.port = port or free_port()
        self.user, self.password = user, password
        self.messages: list[tuple[list[str], object]] = []
        self.logins: list[str] = []
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy

        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user
              and auth_data.password.decode() == self.password)  # fmt: skip
        if ok:
            self.logins.append(self.user)
        return AuthResult(success=ok)

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller

        kwargs = {}
        if self.user is not None:
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False,
                      "auth_required": True}  # fmt: skip
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class HttpReceiver:
    """A loopback HTTP server that records every request (method, path, headers, body) and
    answers from ``script``: each request takes the next answer, the last one repeats. An
    answer is a status code, or a callable ``(request) -> status`` (it may block: a provider
    that does not answer in time)."""

    def __init__(self, script: list | None = None) -> None:
        import http.server
        import threading

        self.script = list(script or [200])
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = {"method": "POST", "path": self.path, "headers": dict(self.headers),
                           "body": body}  # fmt: skip
                with receiver.lock:
                    receiver.requests.append(request)
                    answer = (
                        receiver.script.pop(0) if len(receiver.script) > 1 else receiver.script[0]
                    )
                status = answer(request) if callable(answer) else answer
                request["status"] = status
                payload = (
                    b'{"sid": "SM1", "status": "queued"}'
                    if status < 300
                    else (b'{"code": 20500, "message": "Internal Server Error"}')
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up waiting
                    pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
