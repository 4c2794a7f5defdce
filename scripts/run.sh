#!/usr/bin/env bash
# README command 1: install dependencies, build a release `tether`, and run
# the main job -- the gateway on its embedded durable store (./tether-data) --
# with a short demo that shows a client resuming with nothing lost. The
# gateway then keeps running until Ctrl-C (which drains it).
#
#   scripts/run.sh                 # listens on 127.0.0.1:8080
#   TETHER_LISTEN=127.0.0.1:9000 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target tether

listen="${TETHER_LISTEN:-127.0.0.1:8080}"
export TETHER_TOKEN_SECRET="${TETHER_TOKEN_SECRET:-$(openssl rand -hex 24)}"
export TETHER_ADMIN_KEY="${TETHER_ADMIN_KEY:-$(openssl rand -hex 16)}"
tether=./build/release/tools/tether

"$tether" serve --listen "$listen" --data ./tether-data &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM
for _ in $(seq 1 50); do
  curl -fsS "http://$listen/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo
echo "== demo: alice's link drops while bob publishes; alice resumes =="
/usr/bin/python3 scripts/demo.py "ws://$listen/" \
  "$("$tether" token --user alice)" "$("$tether" token --user bob)"
echo
echo "== the gateway keeps running on ws://$listen (Ctrl-C drains and stops it) =="
echo "   watch it:  curl -s http://$listen/metrics | grep ^tether_"
echo "   history:   curl -s -H 'Authorization: Bearer $TETHER_ADMIN_KEY' http://$listen/api/rooms/lobby/history"
echo "   a token:   TETHER_TOKEN_SECRET=$TETHER_TOKEN_SECRET $tether token --user you"
echo "   a client:  $tether connect ws://$listen/ --room lobby --token $("$tether" token --user you)"
wait $server
