#!/usr/bin/env node
// Drives otpd's Twilio-compatible routes with Twilio's official Node library.
//
// The library takes an HTTP client: `OtpdRequestClient` below sends every request to
// otpd's base URL instead of Twilio's. The account SID is the tenant's (`otpd tenant list`
// shows it; the library refuses a user name that does not start with AC) and the auth token
// one of the tenant's API keys.
//
//     export OTPD_URL=http://127.0.0.1:8080 OTPD_ACCOUNT_SID=AC... OTPD_API_KEY=otpd_...
//     node examples/twilio_verify.js start --to +4915112345678
//     node examples/twilio_verify.js check --sid VE... --code 123456
//     node examples/twilio_verify.js fetch --sid VE...
//     node examples/twilio_verify.js cancel --sid VE...
//
// `start` and `check` also take `--amount` and `--payee`. Prints the verification, or the
// error, as one JSON line; exits 0 on success and 1 when otpd refused the request.

const twilio = require("twilio");

class OtpdRequestClient extends twilio.RequestClient {
  constructor(baseUrl) {
    super();
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  request(options) {
    const url = new URL(options.uri);
    return super.request({ ...options, uri: `${this.baseUrl}${url.pathname}${url.search}` });
  }
}

function parse(argv) {
  const [action, ...rest] = argv;
  const options = {};
  for (let i = 0; i < rest.length; i += 2) {
    options[rest[i].replace(/^--/, "")] = rest[i + 1];
  }
  return { action, options };
}

// The fields of a verification or a check that the caller reads, named as in the API.
function shown(verification) {
  const fields = {
    sid: "sid", service_sid: "serviceSid", account_sid: "accountSid", to: "to",
    channel: "channel", status: "status", valid: "valid", amount: "amount", payee: "payee",
  };
  const shown = Object.fromEntries(
    Object.entries(fields).map(([name, field]) => [name, verification[field] ?? null]));
  if (verification.sendCodeAttempts) {
    shown.send_code_attempts = verification.sendCodeAttempts.length;
  }
  return shown;
}

async function main() {
  const { action, options } = parse(process.argv.slice(2));
  const missing = ["OTPD_URL", "OTPD_ACCOUNT_SID", "OTPD_API_KEY"].filter((name) => !process.env[name]);
  if (missing.length > 0) {
    console.error(`Set ${missing.join(", ")} (see the top of this file).`);
    return 2;
  }
  const client = twilio(process.env.OTPD_ACCOUNT_SID, process.env.OTPD_API_KEY, {
    httpClient: new OtpdRequestClient(process.env.OTPD_URL),
  });
  // A tenant has one Verify service.
  const [service] = await client.verify.v2.services.list({ limit: 1 });
  const verify = client.verify.v2.services(service.sid);
  const binding = {};
  for (const key of ["amount", "payee"]) {
    if (options[key] !== undefined) binding[key] = options[key];
  }
  try {
    let result;
    if (action === "start") {
      result = await verify.verifications.create({ to: options.to, channel: "sms", ...binding });
    } else if (action === "check") {
      const target = options.sid ? { verificationSid: options.sid } : { to: options.to };
      result = await verify.verificationChecks.create({ code: options.code, ...target, ...binding });
    } else if (action === "fetch") {
      result = await verify.verifications(options.sid).fetch();
    } else if (action === "cancel") {
      result = await verify.verifications(options.sid).update({ status: "canceled" });
    } else {
      console.error("The action is one of start, check, fetch, cancel.");
      return 2;
    }
    console.log(JSON.stringify(shown(result)));
    return 0;
  } catch (error) {
    if (error instanceof twilio.RestException) {
      console.log(JSON.stringify({ error: { status: error.status, code: error.code, message: error.message } }));
      return 1;
    }
    throw error;
  }
}

main().then((code) => process.exit(code), (error) => {
  console.error(error);
  process.exit(2);
});
