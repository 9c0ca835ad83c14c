#!/usr/bin/env python3
"""Publishes one OTP request to otpd over RabbitMQ and prints otpd's answer.

The request goes to the queue `<namespace>.requests` with publisher confirms (the broker
has it once `basic_publish` returns), `request_id` as its idempotency key (publish the same
one again, after a timeout or a crash, and otpd issues one code, answering with the same
id), and `reply_to` naming an exclusive queue of this client, where otpd publishes the
outcome with the request's `correlation_id`.

    OTPD_AMQP_URL=amqp://user:password@host:5672/%2f \\
        python3 examples/publish_request.py --tenant acme --to +4915112345678

Prints the outcome as one JSON line: `{"type": "verification.created", "id": ..., ...}` or
`{"type": "verification.rejected", "error": {"code", "message", ...}, ...}`. Exits 0 when a
verification was created, 1 when otpd refused the request, 2 when no answer came in time.
"""

import argparse
import json
import os
import sys
import uuid

import pika


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--to", required=True, help="E.164 number or email address")
    parser.add_argument("--channel", default="sms", choices=["sms", "email", "voice", "whatsapp"])
    parser.add_argument("--request-id", default=None, help="reuse one to retry safely")
    parser.add_argument("--namespace", default="otp", help="otpd's amqp.namespace")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    args = parser.parse_args()

    url = os.environ.get("OTPD_AMQP_URL")
    if not url:
        print("Set OTPD_AMQP_URL to the broker's URL, e.g. amqp://user:password@host:5672/%2f",
              file=sys.stderr)
        return 2
    request_id = args.request_id or f"r-{uuid.uuid4()}"
    request = {"request_id": request_id, "tenant": args.tenant, "to": args.to,
               "channel": args.channel}

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        replies = channel.queue_declare(queue="", exclusive=True).method.queue
        correlation_id = str(uuid.uuid4())
        # With confirms on, this returns once the broker has the message, and raises if it
        # could not be routed (mandatory) or was refused.
        channel.basic_publish(
            exchange="",
            routing_key=f"{args.namespace}.requests",
            body=json.dumps(request).encode(),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                reply_to=replies,
                correlation_id=correlation_id,
            ),
            mandatory=True,
        )
        for method, properties, body in channel.consume(
                replies, auto_ack=True, inactivity_timeout=args.timeout):
            if method is None:
                print(json.dumps({"request_id": request_id, "error": "no answer in time"}))
                return 2
            if properties.correlation_id != correlation_id:
                continue
            outcome = json.loads(body)
            print(json.dumps(outcome))
            return 0 if outcome.get("type") == "verification.created" else 1
        return 2
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
