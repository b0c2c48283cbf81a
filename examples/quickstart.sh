#!/usr/bin/env bash
# The netkeep quickstart over REST with curl: two namespaces, blue and red,
# joined by veth pairs to bridge br0 on the host, each with a default route.
#
#   examples/quickstart.sh up     create everything, wait until READY, ping blue → red
#   examples/quickstart.sh down   delete everything again
#
# NETKEEP_REST_SOCKET: the daemon's REST socket (default var/rest.sock).
# Run as root next to a running netkeepd (npm start, or npm run sandbox).
set -euo pipefail

SOCK=${NETKEEP_REST_SOCKET:-var/rest.sock}

# api METHOD PATH [JSON]: one request; prints the body, fails on HTTP >= 400.
api() {
  local method=$1 path=$2 body=${3:-}
  local args=(--silent --show-error --unix-socket "$SOCK" -X "$method" -w '\n%{http_code}')
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data "$body")
  local out code
  if [[ ! -S $SOCK ]]; then
    echo "no netkeepd socket at $SOCK: start the daemon (npm start), or set NETKEEP_REST_SOCKET" >&2
    return 1
  fi
  out=$(curl "${args[@]}" "http://netkeep$path")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if ((code >= 400)); then
    echo "$method $path: HTTP $code: $out" >&2
    return 1
  fi
  printf '%s\n' "$out"
}

# wait_ready KIND NAME: polls until status.state is READY (10 s at most).
wait_ready() {
  local kind=$1 name=$2 body
  for _ in $(seq 100); do
    body=$(api GET "/v1/$kind/$name")
    if [[ $body == *'"state":"READY"'* ]]; then
      echo "$kind/$name READY"
      return 0
    fi
    sleep 0.1
  done
  echo "$kind/$name is not READY: $body" >&2
  return 1
}

up() {
  api POST /v1/namespaces '{"name":"blue"}' >/dev/null
  api POST /v1/namespaces '{"name":"red"}' >/dev/null
  api POST /v1/bridges '{"name":"br0","addresses":["10.50.0.1/24"]}' >/dev/null
  api POST /v1/veths '{"name":"blue","a":{"ifname":"vh-blue","bridge":"br0"},"b":{"ifname":"eth0","namespace":"blue","addresses":["10.50.0.2/24"]}}' >/dev/null
  api POST /v1/veths '{"name":"red","a":{"ifname":"vh-red","bridge":"br0"},"b":{"ifname":"eth0","namespace":"red","addresses":["10.50.0.3/24"]}}' >/dev/null
  api POST /v1/routes '{"name":"blue-default","namespace":"blue","destination":"default","via":"10.50.0.1"}' >/dev/null
  api POST /v1/routes '{"name":"red-default","namespace":"red","destination":"default","via":"10.50.0.1"}' >/dev/null
  for r in namespaces/blue namespaces/red bridges/br0 veths/blue veths/red routes/blue-default routes/red-default; do
    wait_ready "${r%/*}" "${r#*/}"
  done
  ip netns exec blue ping -c 1 -W 2 10.50.0.3 >/dev/null
  echo "ping blue → red (10.50.0.3) across br0: ok"
}

# remove PATH: DELETE, where a resource already gone (404) is fine, so that a
# half-finished down can be run again.
remove() {
  local err
  if err=$(api DELETE "/v1/$1" 2>&1 >/dev/null); then
    echo "deleted $1"
  elif [[ $err == *'HTTP 404'* ]]; then
    echo "already gone: $1"
  else
    echo "$err" >&2
    return 1
  fi
}

down() {
  for r in routes/blue-default routes/red-default veths/blue veths/red bridges/br0 namespaces/blue namespaces/red; do
    remove "$r"
  done
  # The reconciler removes the kernel objects right after; wait for it (10 s at most).
  for _ in $(seq 100); do
    if ! ip netns list | grep -qwE 'blue|red' && ! ip link show br0 >/dev/null 2>&1; then
      echo "kernel objects gone"
      return 0
    fi
    sleep 0.1
  done
  echo "the kernel objects are still there after 10 s" >&2
  return 1
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
