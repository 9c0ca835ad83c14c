#!/usr/bin/env bash
# A node away under full load, and how it catches up: three otpd nodes (release build) on one
# broker namespace take the harness's AMQP load (closed loop, generic HTTP provider) for
# AWAY + 20 + LOAD_AFTER seconds (LOAD_AFTER defaults to 40). Node 3 is killed -9 twenty
# seconds in and started again on its store AWAY seconds later; LOAD_AFTER=0 ends the load
# as it comes back, so it applies the backlog on an otherwise idle host (LOAD_AFTER=-15 ends
# it 15 s before, so the last requests have drained too). Prints what node 3 logged of its
# return (the backlog it applied, how long that took, each takeover), the changelog streams'
# bytes, and the harness's report.
# Loopback only; everything it starts stops with it, and the namespace is deleted.
#
#   cargo build --release -p otpd --bin otpd && cargo build --release -p otpd-loadtest
#   AWAY=600 loadtest/away.sh
set -euo pipefail

AWAY=${AWAY:-600}
LOAD_AFTER=${LOAD_AFTER:-40}
BIN=${BIN:-target/release}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
FAKE_PORT=${FAKE_PORT:-18733}
DIR=$(mktemp -d -t otpd-away-XXXXXX)
NAMESPACE="away$(openssl rand -hex 4)"
KEY="otpk_$(openssl rand -hex 16)"
KEY_HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
PEPPER=$(openssl rand -hex 32)
SEALING_KEY=$(openssl rand -hex 32)
declare -A PIDS PORTS

cat >"$DIR/load.toml" <<EOF
[sandbox]
enabled = false

[providers.load]
kind = "http"
url = "http://127.0.0.1:$FAKE_PORT/send"
body_template = '{"to": "{to}", "text": "{body}", "ref": "{verification_id}"}'

[routing.default]
sms = ["load"]
email = ["load"]
EOF

stop_all() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    "$BIN/otpd-loadtest" clean --amqp-url "$AMQP_URL" --namespace "$NAMESPACE" || true
}
trap stop_all EXIT

# Starts node $1 on its store (appending to its log) and waits until it is ready.
start_node() {
    local n=$1
    OTPD__STORE__DIR="$DIR/data-$n" OTPD__HTTP__LISTEN=127.0.0.1:0 \
    OTPD__AMQP__URL="$AMQP_URL" OTPD__AMQP__NAMESPACE="$NAMESPACE" \
    OTPD__CLUSTER__NODE_ID="node-$n" \
    OTPD__SECRETS__PEPPER="$PEPPER" OTPD__SECRETS__SEALING_KEY="$SEALING_KEY" \
    OTPD__TENANTS__DEV__API_KEY_SHA256="$KEY_HASH" \
    OTPD__RATE_LIMITS__TENANT_PER_SECOND=1000000 OTPD__RATE_LIMITS__TENANT_BURST=1000000 \
    OTPD__FRAUD__MODE=monitor RUST_LOG=warn,otpd=info NO_COLOR=1 \
        "$BIN/otpd" serve --config "$DIR/load.toml" >>"$DIR/node-$n.log" 2>&1 &
    PIDS[$n]=$!
    # Its resident memory every second while it runs, in KiB (the last start's file wins).
    (while kill -0 "${PIDS[$n]}" 2>/dev/null; do ps -o rss= -p "${PIDS[$n]}"; sleep 1; done \
        >"$DIR/rss-$n" 2>/dev/null) &
    local deadline=$((SECONDS + 900))
    until PORTS[$n]=$(grep -o 'address=http://127.0.0.1:[0-9]*' "$DIR/node-$n.log" | tail -1 | cut -d: -f3) \
        && [ -n "${PORTS[$n]}" ] && curl -sf "http://127.0.0.1:${PORTS[$n]}/readyz" >/dev/null; do
        if [ $SECONDS -gt $deadline ]; then echo "node $n never became ready; see $DIR/node-$n.log" >&2; exit 1; fi
        sleep 0.2
    done
}

for n in 1 2 3; do start_node "$n"; done
echo "three nodes ready on namespace $NAMESPACE (logs in $DIR)"

"$BIN/otpd-loadtest" amqp --target "http://127.0.0.1:${PORTS[1]}" --namespace "$NAMESPACE" \
    --api-key "$KEY" --fake-port "$FAKE_PORT" --tenant dev --with-ceiling false \
    --duration "$((AWAY + 20 + LOAD_AFTER))s" --drain-timeout 120s --out "$DIR/report.json" >"$DIR/load.txt" 2>&1 &
LOAD=$!

sleep 20
kill -9 "${PIDS[3]}"
echo "node 3 killed at $(date -u +%T); away for ${AWAY}s"
sleep "$AWAY"
back=$(date +%s.%N)
start_node 3
ready=$(date +%s.%N)
echo "node 3 started again at $(date -u +%T); ready after $(echo "$ready - $back" | bc) s"
wait "$LOAD" || true

echo "--- node 3's return"
awk -v since="$(date -u -d @"${back%.*}" +%Y-%m-%dT%H:%M:%S)" '$1 >= since' "$DIR/node-3.log" \
    | grep -E "backlog|Now the owner" || true
sort -n "$DIR/rss-3" | tail -1 | awk '{ printf "node 3 peak RSS since its return: %d MiB\n", $1 / 1024 }'
echo "--- changelog streams ($NAMESPACE)"
du -sb /var/lib/rabbitmq/mnesia/*/stream/__"${NAMESPACE}"_changelog_* 2>/dev/null \
    | awk '{ total += $1 } END { printf "%d bytes in %d streams\n", total, NR }'
echo "--- load"
tail -40 "$DIR/load.txt"
