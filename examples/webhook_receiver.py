#!/usr/bin/env python3
"""Receives otpd's webhooks, checks each one's signature, and prints each event once.

otpd signs every webhook with the tenant's secret: the header
`Otpd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<raw body>">`. This
receiver recomputes it over the raw body, refuses a signature older than five minutes (a
replay) with 400, and answers 204 to a good one. otpd retries until it gets a 2xx, so an
event may come more than once: the receiver keeps the ids it has seen and prints each event
once, as one JSON line.

    OTPD_WEBHOOK_SECRET=... python3 examples/webhook_receiver.py --port 8090

A real receiver would keep the seen ids in its database, with the work the event causes.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 300


def verified(secret: bytes, header: str, body: bytes) -> bool:
    """Whether `header` signs `body` with `secret`, within the tolerance."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        sent_at = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(time.time() - sent_at) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret, f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    secret = os.environ.get("OTPD_WEBHOOK_SECRET", "").encode()
    if not secret:
        print("Set OTPD_WEBHOOK_SECRET to the tenant's webhook secret.", file=sys.stderr)
        return 2
    seen = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not verified(secret, self.headers.get("Otpd-Signature", ""), body):
                self.send_response(400)
                self.end_headers()
                return
            event = json.loads(body)
            if event["id"] not in seen:
                seen.add(event["id"])
                print(json.dumps(event), flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
