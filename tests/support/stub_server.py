"""A local HTTP server that stands in for a provider: records requests, answers as told."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without answering


class StubServer:
    """Threaded HTTP server on 127.0.0.1 with a queue of scripted replies per path prefix."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: list[tuple[str, Reply]] = []
        self.default = Reply()
        self._lock = threading.Lock()
        self._seen_keys: dict[str, dict] = {}
        # When set, a repeated value of this header is answered from memory, as a provider
        # honouring idempotency keys would; `deduplicated` counts such repeats.
        self.dedupe_header: str | None = None
        self.deduplicated = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: without this Nagle + delayed ACK add 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    # The client died mid-request (a killed worker): as a real server, drop
                    # it unanswered and unrecorded; no provider acts on half a request.
                    self.close_connection = True
                    return
                record = Recorded(self.command, self.path, dict(self.headers.items()), body,
                                  time.time())
                reply = stub._next_reply(self.path, record)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(
                    reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, path_prefix: str, *replies: Reply) -> None:
        """Answer the next requests under path_prefix with these replies, in order."""
        with self._lock:
            self._scripts.extend((path_prefix, reply) for reply in replies)

    def _next_reply(self, path: str, record: Recorded) -> Reply:
        with self._lock:
            if self.dedupe_header:
                key = record.header(self.dedupe_header)
                if key and key in self._seen_keys:
                    self.deduplicated += 1
                    return Reply(200, self._seen_keys[key])
            self.requests.append(record)
            reply = self.default
            for index, (prefix, scripted) in enumerate(self._scripts):
                if path.startswith(prefix):
                    reply = scripted
                    del self._scripts[index]
                    break
            if self.dedupe_header and 200 <= reply.status < 300 and not reply.drop:
                key = record.header(self.dedupe_header)
                if key:
                    self._seen_keys[key] = reply.body
            return reply

    def wait_for(self, count: int, timeout: float = 15.0, path: str = "") -> list[Recorded]:
        """Wait until `count` requests under path arrived; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matching = [r for r in self.requests if r.path.startswith(path)]
            if len(matching) >= count:
                return matching
            time.sleep(0.02)
        matching = [r for r in self.requests if r.path.startswith(path)]
        raise AssertionError(f"expected {count} requests to {path!r}, got {len(matching)}")

    def start(self) -> StubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
