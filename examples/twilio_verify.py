#!/usr/bin/env python3
"""Drives otpd's Twilio-compatible routes with Twilio's official helper library.

An application that uses twilio-python switches to otpd by giving the client an HTTP
client that sends every request to otpd's base URL instead of Twilio's (`OtpdHttpClient`
below); the account SID is the tenant's (`otpd tenant list` shows it) and the auth token
one of the tenant's API keys.

    export OTPD_URL=http://127.0.0.1:8080 OTPD_ACCOUNT_SID=AC... OTPD_API_KEY=otpd_...
    python3 examples/twilio_verify.py start --to +4915112345678
    python3 examples/twilio_verify.py check --sid VE... --code 123456
    python3 examples/twilio_verify.py fetch --sid VE...
    python3 examples/twilio_verify.py cancel --sid VE...

`start` and `check` also take `--amount` and `--payee` (a code bound to a transaction
verifies only with the same ones). Prints the verification, or the error, as one JSON
line; exits 0 on success and 1 when otpd refused the request.
"""

import argparse
import json
import os
import sys
import urllib.parse

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client


class OtpdHttpClient(TwilioHttpClient):
    """Sends each of the library's requests to otpd: the same path, otpd's scheme and host."""

    def __init__(self, base_url, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        parts = urllib.parse.urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        return super().request(method, f"{self.base_url}{parts.path}{query}", *args, **kwargs)


def shown(verification):
    """The fields of a verification or a check that the caller reads."""
    fields = ["sid", "service_sid", "account_sid", "to", "channel", "status", "valid",
              "amount", "payee"]
    shown = {field: getattr(verification, field, None) for field in fields}
    attempts = getattr(verification, "send_code_attempts", None)
    if attempts is not None:
        shown["send_code_attempts"] = len(attempts)
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "check", "fetch", "cancel"])
    parser.add_argument("--to")
    parser.add_argument("--sid", help="the verification's SID, VE...")
    parser.add_argument("--code")
    parser.add_argument("--amount")
    parser.add_argument("--payee")
    args = parser.parse_args()

    settings = {name: os.environ.get(name) for name in
                ["OTPD_URL", "OTPD_ACCOUNT_SID", "OTPD_API_KEY"]}
    missing = [name for name, value in settings.items() if not value]
    if missing:
        print(f"Set {', '.join(missing)} (see the top of this file).", file=sys.stderr)
        return 2
    client = Client(settings["OTPD_ACCOUNT_SID"], settings["OTPD_API_KEY"],
                    http_client=OtpdHttpClient(settings["OTPD_URL"]))
    # A tenant has one Verify service.
    service = client.verify.v2.services.list(limit=1)[0]
    verify = client.verify.v2.services(service.sid)
    binding = {key: value for key, value in
               {"amount": args.amount, "payee": args.payee}.items() if value is not None}
    try:
        if args.action == "start":
            result = verify.verifications.create(to=args.to, channel="sms", **binding)
        elif args.action == "check":
            target = {"verification_sid": args.sid} if args.sid else {"to": args.to}
            result = verify.verification_checks.create(code=args.code, **target, **binding)
        elif args.action == "fetch":
            result = verify.verifications(args.sid).fetch()
        else:
            result = verify.verifications(args.sid).update(status="canceled")
    except TwilioRestException as error:
        print(json.dumps({"error": {"status": error.status, "code": error.code,
                                    "message": error.msg}}))
        return 1
    print(json.dumps(shown(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
