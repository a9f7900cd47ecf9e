"""The collector's HTTP server protocol: uvicorn's httptools protocol with a request head limit.

httptools (llhttp) leaves the size of a request head to the server, and uvicorn sets none: a
50 MB header was read, kept in memory and handed to the application whole. This protocol
answers ``431 Request Header Fields Too Large`` and closes the connection as soon as a head
(request line and headers) passes :data:`MAX_HEAD`, without reading the rest of it, and
without starting the application for it. The application is told (``head_refused``), so the
refusal is quarantined like any other.

The application is also told when the server's graceful stop begins (``server_stopping``):
uvicorn then waits for every open response, and an event stream (``/v1/stream``) never ends
by itself.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Generous for cookie-heavy first-party setups (nginx allows 4 x 8 KB, Node.js 16 KB).
MAX_HEAD = 32 * 1024

_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def refusal_message(size: int) -> str:
    return f"request head larger than {MAX_HEAD // 1024} KB (at least {size:,} bytes)"


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses a request head larger than :data:`MAX_HEAD`.

    A head is measured two ways, each never more than its true size: the parser's pieces of
    it (the URL as it comes, each header once complete), which catches a head that arrives
    whole in one read; and the reads that leave it incomplete, which catches a header that
    never ends (the parser hands a header over only once it is complete).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request line or headers (not a body)
        self._head_done = False  # a head was completed in the chunk being parsed
        self._head_bytes = 0  # bytes read of the current head (in whole chunks)
        self._head_parsed = 0  # bytes of the current head the parser handed over
        self._refused = False  # a head was refused: the connection is closing

    # After a refusal the parser still walks the rest of the chunk it was fed: its callbacks
    # then do nothing, so no request of this connection reaches the application any more.
    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._head_bytes = 0
        self._head_parsed = 0

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        super().on_url(url)
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        super().on_header(name, value)
        self._count(len(name) + len(value) + 4)  # ": " and CRLF

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head, self._head_done = False, True
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        was_in_head, self._head_done = self._in_head, False
        super().data_received(data)
        # Whole chunks count, once parsed, and only while one head stays incomplete: a chunk
        # that completes a head may carry body bytes or whole requests too.
        if was_in_head and self._in_head and not self._head_done and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD and not self.transport.is_closing():
                self._refuse(self._head_bytes)

    def shutdown(self) -> None:
        stopping = getattr(self.app, "server_stopping", None)
        if stopping is not None:
            stopping()
        super().shutdown()

    def _count(self, size: int) -> None:
        self._head_parsed += size
        if self._head_parsed > MAX_HEAD and not self.transport.is_closing():
            self._refuse(self._head_parsed)

    def _refuse(self, size: int) -> None:
        self._refused = True
        message = refusal_message(size)
        refused = getattr(self.app, "head_refused", None)
        if refused is not None:
            refused(self.client, getattr(self, "url", b""), self.headers or [], message)
        if self.cycle is None or self.cycle.response_complete:
            body = b'{"error":"%s"}' % message.encode()
            self.transport.write(_REFUSAL % (len(body), body))
        self.transport.close()
