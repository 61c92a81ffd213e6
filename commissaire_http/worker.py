"""A gunicorn worker whose threads only ever see whole requests.

gunicorn's gthread worker hands a new connection to a thread as soon as a byte
arrives, and the thread then blocks reading the TLS handshake, the head and the
body: a few dozen clients that send half a header hold every thread. This worker
(a subclass of gthread's ThreadWorker) does all reading in the worker's main
poller loop, without blocking:

- TLS handshakes are driven there (do_handshake on a non-blocking socket);
- bytes are gathered until commissaire_http.framing says a whole request is
  here (head, and a body up to max-body-size); only then does a thread get it,
  with everything already buffered in gunicorn's parser;
- a connection that has not sent a whole request within `read_timeout`
  seconds of its first byte (or of being accepted) is closed; an idle kept-alive
  one after gunicorn's `keepalive` seconds;
- too large or malformed requests are answered (413, 431, 400 in the API's JSON
  error shape) from the loop and the connection is drained briefly then closed
  (never a blocking close in the loop);
- when the connection limit is reached, the oldest connection still being read
  is dropped, so idle clients cannot keep new ones out; so it is when the bytes
  buffered for unfinished requests pass BUFFER_BUDGET (memory stays bounded).

Threads never wait on a client's socket for the response either: the thread
writes it into memory (OutputBuffer) and the loop sends it without blocking as
the socket becomes writable. A client that has not taken its whole response
within `read_timeout` is closed; the next pipelined request on a connection is
read only once its response is sent (one response in memory per connection);
past OUTPUT_BUDGET of unsent output per worker, the connection with the oldest
unsent output is dropped.
"""
from __future__ import annotations

import errno
import http as httpstatus
import json
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import IO

from gunicorn import http
from gunicorn import sock as gsock
from gunicorn.config import Config
from gunicorn.workers.gthread import TConn, ThreadWorker

from commissaire import errors
from commissaire_http.framing import COMPLETE, HEAD_LIMIT, MORE, RequestFramer
from commissaire_http.limits import too_large

READ_SIZE = 64 * 1024
LINGER_SECONDS = 2.0  # how long a refused connection is drained so the client reads the answer
LINGER_BYTES = 16 * 1024 * 1024
SWEEP_INTERVAL = 0.25  # seconds between scans for expired connections
BUFFER_BUDGET = 64 * 1024 * 1024  # bytes buffered for unfinished requests, per worker
OUTPUT_BUDGET = 64 * 1024 * 1024  # bytes of responses not yet sent, per worker
SEND_SIZE = 16 * 1024  # one TLS record; a retried TLS send repeats the same slice
_FD_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

#: A socket address: (host, port), (host, port, flowinfo, scope_id), or a Unix path.
SocketAddress = tuple[str, int] | tuple[str, int, int, int] | str


class OutputBuffer:
    """Stands in for the client's socket while a thread serves a request: what
    gunicorn writes is kept in memory (our responses are bounded JSON), so the
    thread never waits on a client that does not read; the loop sends it later.
    Everything else (getpeercert for client-certificate auth, ...) goes to the
    real socket. Closing it only marks the response as abandoned: the loop
    closes the real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.abandoned = False

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self.data += data
        return len(data)

    def sendfile(self, file: IO[bytes], offset: int = 0, count: int | None = None) -> int:
        file.seek(offset)
        data = file.read() if count is None else file.read(count)
        self.data += data
        return len(data)

    def recv(self, size: int, *args: int) -> bytes:
        return b"" if self.abandoned else self.sock.recv(size, *args)

    def shutdown(self, _how: int) -> None:
        self.abandoned = True

    def close(self) -> None:
        self.abandoned = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


class GuardedConn(TConn):  # type: ignore[misc]
    """A connection and what the loop knows about the request being read on it."""

    def __init__(self, cfg: Config, sock: socket.socket, client: SocketAddress,
                 server: SocketAddress,
                 io_timeout: float) -> None:
        super().__init__(cfg, sock, client, server)
        self.io_timeout = io_timeout
        self.framer: RequestFramer | None = None
        self.deadline = 0.0
        self.idle = False  # kept alive, no byte of the next request yet
        self.handshaking = False
        self.lingering = False
        self.drained = 0
        self.watching = 0  # selector events registered for
        self.continue_sent = False
        self.closed = False
        self.output: OutputBuffer | None = None  # the response the loop is sending
        self.sent = 0
        self.keepalive = False  # after the response is sent

    def init(self) -> None:
        # Called by ThreadWorker.handle in the thread: the request is buffered
        # already and the response goes to memory (OutputBuffer); the timeout is
        # a backstop should gunicorn ever touch the real socket.
        self.initialized = True
        self.sock.settimeout(self.io_timeout)


class GuardedThreadWorker(ThreadWorker):  # type: ignore[misc]
    max_body_size = 1024 * 1024
    read_timeout = 10.0

    def init_process(self) -> None:
        self.reading: dict[GuardedConn, None] = {}  # oldest first
        self.ssl_context = gsock.ssl_context(self.cfg) if self.cfg.is_ssl else None
        self._next_sweep = 0.0
        self.buffered = 0  # bytes held for requests still being read, all connections
        self.writing: dict[GuardedConn, None] = {}  # oldest first
        self.unsent = 0  # bytes of responses not yet sent, all connections
        super().init_process()  # runs the loop

    # -- accepting -------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in _FD_EXHAUSTED and self.reading:
                self.log.warning("out of file descriptors: dropping the oldest connection "
                                 "still being read")
                self._drop(next(iter(self.reading)))
            elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        if self.nr_conns >= self.worker_connections and self.reading:
            self._drop(next(iter(self.reading)))
        conn = GuardedConn(self.cfg, client_sock, client_addr, listener.getsockname(),
                           self.read_timeout)
        if self.ssl_context is not None:
            try:
                conn.sock = self.ssl_context.wrap_socket(
                    client_sock, server_side=True, do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
            except OSError:
                self._drop(conn)
                return
            conn.handshaking = True
        self._start_reading(conn, b"", idle=False)

    # -- reading a request in the loop -------------------------------------------

    def _start_reading(self, conn: GuardedConn, data: bytes, idle: bool) -> None:
        conn.framer = RequestFramer(self.max_body_size, data)
        self.buffered += len(data)
        conn.continue_sent = False
        conn.idle = idle and not data
        conn.deadline = time.monotonic() + (self.cfg.keepalive if conn.idle else self.read_timeout)
        self.reading[conn] = None
        self._advance(conn)

    def _on_event(self, conn: GuardedConn, _fileobj: socket.socket) -> None:
        if conn.closed:
            return
        if conn.output is not None:
            self._flush(conn)
        else:
            self._advance(conn)

    def _watch(self, conn: GuardedConn, events: int) -> None:
        if conn.watching == events:
            return
        callback: Callable[[socket.socket], None] = partial(self._on_event, conn)
        if conn.watching:
            self.poller.modify(conn.sock, events, callback)
        else:
            self.poller.register(conn.sock, events, callback)
        conn.watching = events

    def _unwatch(self, conn: GuardedConn) -> None:
        if conn.watching:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            conn.watching = 0

    def _advance(self, conn: GuardedConn) -> None:
        """Make what progress the socket allows: handshake, read, decide."""
        try:
            if conn.handshaking and not self._handshake(conn):
                return
            if conn.lingering:
                self._linger(conn)
                return
            eof = self._read_available(conn)
        except OSError:  # includes ssl.SSLError: a failed handshake, a reset
            self._drop(conn)
            return
        if eof is None:  # TLS must write before it can read: watched for that
            return
        self._keep_within_budget(conn)
        self._decide(conn, eof)

    def _handshake(self, conn: GuardedConn) -> bool:
        """Drive the TLS handshake one step; False while it waits on the socket.
        OSError (a failed handshake) goes to _advance, which drops the connection."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
            return False
        conn.handshaking = False
        return True

    def _read_available(self, conn: GuardedConn) -> bool | None:
        """Read what the socket has, up to the buffer limit. True: the client closed
        its side; False: nothing more for now; None: TLS wants the socket writable
        first (watched for that). OSError (a reset) goes to _advance."""
        assert conn.framer is not None
        while len(conn.framer.buf) <= self._buffer_limit:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return False
            except ssl.SSLWantWriteError:
                self._watch(conn, selectors.EVENT_WRITE)
                return None
            if not data:
                return True
            if conn.idle:  # the next request's first byte: its read timeout starts now
                conn.idle = False
                conn.deadline = time.monotonic() + self.read_timeout
            conn.framer.feed(data)
            self.buffered += len(data)
        return False

    def _decide(self, conn: GuardedConn, eof: bool) -> None:
        """What the bytes read so far call for: a thread, a refusal, a close, or more."""
        assert conn.framer is not None
        if not conn.framer.started:
            if eof:
                self._drop(conn)
            else:
                self._watch(conn, selectors.EVENT_READ)
            return
        outcome = conn.framer.examine()
        if outcome == MORE and len(conn.framer.buf) > self._buffer_limit:
            outcome = too_large(self.max_body_size)  # cannot happen: framing caps first
        if outcome == COMPLETE:
            self._hand_off(conn)
        elif isinstance(outcome, errors.CommissaireError):
            self._refuse(conn, outcome)
        elif eof:
            self._drop(conn)
        else:
            if conn.framer.expects_continue and not conn.continue_sent:
                conn.continue_sent = True
                self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            self._watch(conn, selectors.EVENT_READ)

    def _keep_within_budget(self, reading: GuardedConn) -> None:
        """Many clients each sending most of a large body must not exhaust memory:
        past the budget, the oldest other connections being read are dropped."""
        budget = max(BUFFER_BUDGET, 8 * self._buffer_limit)
        while self.buffered > budget:
            oldest = next((c for c in self.reading if c is not reading and c.framer), None)
            if oldest is None:
                return
            self._drop(oldest)

    def _release(self, conn: GuardedConn) -> None:
        if conn.framer is not None:
            self.buffered -= len(conn.framer.buf)
            conn.framer = None

    @property
    def _buffer_limit(self) -> int:
        """Bytes read ahead at most: a whole request always fits (head + body + slack)."""
        return self.max_body_size + HEAD_LIMIT + 2 * READ_SIZE

    def _send(self, conn: GuardedConn, data: bytes) -> None:
        """Best effort, never blocking: a few hundred bytes fit in any socket buffer."""
        try:
            conn.sock.send(data)
        except (OSError, ValueError):
            pass

    def _hand_off(self, conn: GuardedConn) -> None:
        """The whole request is buffered: give it to a thread."""
        self._unwatch(conn)
        self.reading.pop(conn, None)
        assert conn.framer is not None
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.framer.buf))
        self._release(conn)
        conn.initialized = True
        self.enqueue_req(conn)

    def _refuse(self, conn: GuardedConn, error: errors.CommissaireError) -> None:
        body = json.dumps(error.to_http_body()).encode()
        reason = httpstatus.HTTPStatus(error.http_status).phrase
        self._send(conn, (f"HTTP/1.1 {error.http_status} {reason}\r\n"
                          "Content-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                          ).encode() + body)
        self._close_softly(conn)

    # -- closing without blocking the loop -----------------------------------------

    def _close_softly(self, conn: GuardedConn) -> None:
        """Half-close, then drain what the client still sends for a moment, so the
        kernel does not reset the connection before the client read our answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self._drop(conn)
            return
        self._release(conn)
        conn.lingering, conn.drained = True, 0
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.reading[conn] = None
        self._linger(conn)

    def _linger(self, conn: GuardedConn) -> None:
        while conn.drained < LINGER_BYTES:
            try:
                data = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                self._watch(conn, selectors.EVENT_READ)
                return
            except (OSError, ValueError):
                break
            if not data:
                break
            conn.drained += len(data)
        self._drop(conn)

    def _drop(self, conn: GuardedConn) -> None:
        """Close now; the connection is gone from the worker's books."""
        if conn.closed:
            return
        conn.closed = True
        self._unwatch(conn)
        self.reading.pop(conn, None)
        self._release(conn)
        self._release_output(conn)
        self.nr_conns -= 1
        conn.close()

    # -- the thread's side ------------------------------------------------------

    def handle_request(self, req: http.Request, conn: GuardedConn) -> bool:
        # The body is here already: the client got its "100 Continue" from the
        # loop if it asked, or sent the body without waiting.
        req._expected_100_continue = False
        return super().handle_request(req, conn)

    def handle(self, conn: GuardedConn) -> object:
        """In a thread: serve the request with the response going to memory."""
        real = conn.sock
        conn.sock = output = OutputBuffer(real)
        try:
            return super().handle(conn)
        finally:
            conn.sock = real
            conn.output = output

    def finish_request(self, conn: GuardedConn, fs: Future[object]) -> None:
        """Back in the loop after a thread served a request: send its response."""
        try:
            keepalive = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keepalive = False
        if conn.closed:
            return
        output = conn.output
        if output is None or output.abandoned:
            self._drop(conn)
            return
        if not self._nonblocking(conn):
            return
        conn.keepalive, conn.sent = keepalive, 0
        conn.deadline = time.monotonic() + self.read_timeout
        self.writing[conn] = None
        self.unsent += len(output.data)
        while self.unsent > max(OUTPUT_BUDGET, 2 * len(output.data)) and self.writing:
            oldest = next(iter(self.writing))
            self.log.info("unsent responses over %d bytes: dropping a connection", OUTPUT_BUDGET)
            self._drop(oldest)
        if not conn.closed:
            self._flush(conn)

    def _release_output(self, conn: GuardedConn) -> None:
        if conn.output is not None:
            self.unsent -= len(conn.output.data) - conn.sent
            conn.output = None
        self.writing.pop(conn, None)

    def _flush(self, conn: GuardedConn) -> None:
        """Send what the socket takes now; once all is sent, go on with the connection."""
        assert conn.output is not None
        data = conn.output.data
        try:
            while conn.sent < len(data):
                try:
                    n = conn.sock.send(memoryview(data)[conn.sent:conn.sent + SEND_SIZE])
                except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                    self._watch(conn, selectors.EVENT_WRITE)
                    return
                except ssl.SSLWantReadError:
                    self._watch(conn, selectors.EVENT_READ)
                    return
                conn.sent += n
                self.unsent -= n
        except (OSError, ValueError):
            self._drop(conn)
            return
        self._release_output(conn)
        self._after_response(conn, conn.keepalive)

    def _nonblocking(self, conn: GuardedConn) -> bool:
        """The loop never waits on a socket: one that cannot say so is dropped."""
        try:
            conn.sock.setblocking(False)
        except (OSError, ValueError):
            self._drop(conn)
            return False
        return True

    def _after_response(self, conn: GuardedConn, keepalive: bool) -> None:
        if not self._nonblocking(conn):
            return
        if keepalive and self.alive:
            # Bytes the client sent after the request (pipelining) start the next one.
            leftover = conn.parser.unreader.take_buffered()
            self._start_reading(conn, leftover, idle=True)
            return
        self._close_softly(conn)

    # -- timeouts ---------------------------------------------------------------

    def murder_pending(self) -> None:
        """Called by the loop after every round of events."""
        super().murder_pending()
        now = time.monotonic()
        if now < self._next_sweep and self.alive:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        for conn in [c for c in self.reading if c.deadline <= now or not self.alive]:
            self._drop(conn)
        for conn in [c for c in self.writing if c.deadline <= now]:
            # A client that does not read is no error: one line, no traceback.
            self.log.info("closing a connection from %s: its response was not read within "
                          "%.0f s", conn.client, self.read_timeout)
            self._drop(conn)
        while self.nr_conns >= self.worker_connections and self.reading:
            self._drop(next(iter(self.reading)))


def worker_class(max_body_size: int, read_timeout: float) -> type[GuardedThreadWorker]:
    """The worker class for gunicorn's `worker_class` setting, with these limits."""
    return type("CommissaireWorker", (GuardedThreadWorker,),
                {"max_body_size": max_body_size, "read_timeout": read_timeout,
                 "__module__": __name__})
