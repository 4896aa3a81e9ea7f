"""A fast stand-in provider in its own process: records every request, can misbehave.

POST /send-sms (and any other path) records {key, at, path} and answers 200 JSON.
GET /_stats returns counts; GET /_records returns every record; GET /_repeats returns
{key, at} for every repeated key (answered from memory); POST /_reset clears;
POST /_mode {"mode": "ok"|"error"|"slow"|"drop", "status": 503, "delay": 20} switches
behaviour; with dedupe on (default), a repeated Idempotency-Key is answered from memory
and counted as `deduplicated`, as a provider honouring idempotency keys would.

Run: python -m bench.stub_provider PORT
"""
from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STATE: dict[str, Any] = {"records": [], "keys": {}, "deduplicated": 0, "repeats": [],
                         "mode": {"mode": "ok"}, "failed": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle + delayed ACK add 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        with LOCK:
            if self.path == "/_records":
                return self._send(200, STATE["records"])
            if self.path == "/_repeats":
                return self._send(200, STATE["repeats"])
            keys = STATE["keys"]
            return self._send(200, {"accepted": len(STATE["records"]), "unique": len(keys),
                                    "deduplicated": STATE["deduplicated"],
                                    "failed": STATE["failed"], "mode": STATE["mode"]})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/_reset":
            with LOCK:
                STATE.update(records=[], keys={}, deduplicated=0, failed=0, repeats=[])
            return self._send(200, {"ok": True})
        if self.path == "/_mode":
            with LOCK:
                STATE["mode"] = json.loads(body or b"{}")
            return self._send(200, STATE["mode"])
        self._provider(body)

    def _provider(self, body: bytes) -> None:
        now = time.time()
        mode = STATE["mode"]
        key = self.headers.get("Idempotency-Key", "")
        if mode.get("mode") == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode.get("mode") == "slow":
            time.sleep(float(mode.get("delay", 20)))
        if mode.get("mode") == "error":
            with LOCK:
                STATE["failed"] += 1
            return self._send(int(mode.get("status", 503)), {"error": "injected"})
        with LOCK:
            if key and key in STATE["keys"]:
                STATE["deduplicated"] += 1
                STATE["repeats"].append({"key": key, "at": now})
                return self._send(200, {"id": key, "deduplicated": True})
            STATE["keys"][key] = now
            STATE["records"].append({"key": key, "at": now, "path": self.path})
        self._send(200, {"id": key})


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18080
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    server.serve_forever()


if __name__ == "__main__":
    main()
