#!/usr/bin/env bash
# A tether cluster on this machine, in one command: a Redis, three gateway
# nodes sharing it, and nginx in front of them (deploy/nginx.conf), all on
# loopback. It prints the URL to connect to; Ctrl-C stops everything.
#
#   scripts/cluster.sh
#
# Environment (all optional):
#   TETHER_BIN   the tether binary (default: build/release, else build/dev;
#                built with the dev preset when neither exists)
#   PORT         nginx's port (default 8080)
#   NODE_PORTS   the three nodes' ports (default "7001 7002 7003")
#   REDIS_PORT   Redis's port (default 6390)
#   ADMIN_KEY    the nodes' admin key (default: random, printed)
# Tokens: the nodes run with --allow-anonymous (the token is the user name),
# for trying things out; docs/SCALING.md shows a real deployment.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${PORT:-8080}"
read -r -a node_ports <<<"${NODE_PORTS:-7001 7002 7003}"
redis_port="${REDIS_PORT:-6390}"
admin_key="${ADMIN_KEY:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"

bin="${TETHER_BIN:-}"
if [[ -z "$bin" ]]; then
  for b in "$root/build/release/tools/tether" "$root/build/dev/tools/tether"; do
    if [[ -x "$b" ]]; then bin="$b"; break; fi
  done
fi
if [[ -z "$bin" ]]; then
  echo "cluster: no tether binary yet: building the dev preset" >&2
  (cd "$root" && cmake --preset dev >/dev/null && cmake --build --preset dev --target tether)
  bin="$root/build/dev/tools/tether"
fi
for tool in redis-server redis-cli nginx curl; do
  command -v "$tool" >/dev/null || { echo "cluster: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
if [[ ${#node_ports[@]} -ne 3 ]]; then
  echo "cluster: NODE_PORTS must name three ports" >&2
  exit 2
fi

work="$(mktemp -d -t tether-cluster-XXXXXX)"
pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  echo "cluster: stopped" >&2
}
trap stop EXIT
trap 'exit 130' INT TERM

wait_until() {  # what, command...: polls a readiness check, at most 10 s
  local what="$1"; shift
  for _ in $(seq 1 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "cluster: $what did not come up; the logs end with:" >&2
  tail -n 5 "$work"/*.log >&2 || true
  exit 1
}

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
wait_until "Redis on port $redis_port" redis-cli -p "$redis_port" ping

upstreams=""
for i in 0 1 2; do
  p="${node_ports[$i]}"
  "$bin" serve --listen "127.0.0.1:$p" --redis "redis://127.0.0.1:$redis_port" \
    --node-id "node-$((i + 1))" --allow-anonymous --admin-key "$admin_key" \
    >"$work/node-$((i + 1)).log" 2>&1 &
  pids+=($!)
  upstreams+="        server 127.0.0.1:$p max_fails=1 fail_timeout=3s;\n"
done
for p in "${node_ports[@]}"; do
  wait_until "the node on port $p" curl -sf "http://127.0.0.1:$p/healthz"
done

mkdir -p "$work/tmp"
sed -e "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$port;/" \
    -e "/        server 127\.0\.0\.1:700[1-3] /d" \
    -e "s/^\(    upstream tether {\)$/\1\n$upstreams/" \
    "$root/deploy/nginx.conf" >"$work/nginx.conf"
nginx -p "$work" -e "$work/nginx.log" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_until "nginx on port $port" curl -s -o /dev/null "http://127.0.0.1:$port/"

cat <<EOF
tether cluster: ws://127.0.0.1:$port/
  nginx 127.0.0.1:$port -> nodes ${node_ports[*]} (Redis 127.0.0.1:$redis_port)
  admin key: $admin_key   logs: $work
  try: $bin connect ws://127.0.0.1:$port/ --token alice --room lobby
  health of a node: curl http://127.0.0.1:${node_ports[0]}/healthz
Ctrl-C stops everything.
EOF

# Runs until Ctrl-C, or until one of the processes dies.
wait -n "${pids[@]}" || true
echo "cluster: a process exited; the logs end with:" >&2
tail -n 5 "$work"/*.log >&2 || true
exit 1
