#!/usr/bin/env bash
# docker-compose for real (issue 11, item 7), run by .ci/run after npm test: the repository's own
# docker-compose.yml and Dockerfile, as a user runs them, on a machine that cannot pull.
#   1. seed the base images they name when missing (scripts/compose-seed.js: from this host)
#   2. make the NATS users' keys (scripts/compose-auth.js) in a temp dir
#   3. docker-compose build, up -d: NATS with credentials + corral with the example pool
#   4. from the host: a client without a key is refused; with the client's key, acquire a lease,
#      reach the agent at the URL it gave, release it; /metrics counts the lease
#   5. docker-compose down -v, and no container of the project may be left
# Whatever fails, the exit trap takes the project down (containers, network, volumes) and removes
# the corral image it built; seeded base images and the build cache stay (the next run reuses them).
# Needs docker, docker-compose, curl, and npm ci done (tsx). Run from anywhere, as a user of the engine.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

work=$(mktemp -d /tmp/corral-compose-check.XXXXXX)
free_port() { node -e 's=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
export COMPOSE_PROJECT_NAME="corral-ci-$$"
export CORRAL_NATS_AUTH="$work/nats-auth"
export CORRAL_IMAGE="corral-ci/corral:$$"
CORRAL_NATS_PORT=$(free_port)
metrics_port=$(free_port)
export CORRAL_NATS_PORT CORRAL_METRICS="127.0.0.1:$metrics_port"
metrics="http://127.0.0.1:$metrics_port/metrics"
started=$SECONDS

say() { printf '\n\033[1m--> %s\033[0m (%d s)\n' "$*" $((SECONDS - started)); }
left() { docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"; }
cleanup() {
  local status=$?
  if ((status != 0)); then
    echo "compose check FAILED; the last of corral's log:" >&2
    docker-compose logs --no-color --tail 40 corral >&2 || true
  fi
  docker-compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  docker image rm "$CORRAL_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
  if [[ -n $(left) ]]; then
    echo "compose check: containers of $COMPOSE_PROJECT_NAME still exist:" >&2
    docker ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" >&2
    status=1
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The CLI from the host, in the temp dir: no ./.corral/nats-auth of this checkout to fall back on.
cli() { (cd "$work" && XDG_STATE_HOME="$work/state" NATS_URL="nats://127.0.0.1:$CORRAL_NATS_PORT" node "$repo/bin/corral.js" "$@"); }

say "base images"
node --import tsx scripts/compose-seed.js

say "NATS users"
node --import tsx scripts/compose-auth.js "$CORRAL_NATS_AUTH"
docker-compose config -q

say "docker-compose build"
docker-compose build --quiet corral >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }

say "docker-compose up -d"
docker-compose up -d

say "waiting for corral's /metrics and two idle agents of pool example"
for _ in $(seq 1 240); do
  if curl -sf "$metrics" 2>/dev/null | grep -q '^corral_pool_agents{pool="example",phase="idle"} [2-9]'; then
    break
  fi
  sleep 0.5
done
curl -sf "$metrics" | grep '^corral_pool_agents{pool="example",phase="idle"} [2-9]' || {
  echo "no two idle agents after 120 s" >&2
  exit 1
}

say "a client without a key is refused"
set +e
out=$(cli status example 2>&1)
code=$?
set -e
echo "$out"
[[ $code == 3 && $out == *"Authorization Violation"* ]] || { echo "expected exit 3 and Authorization Violation, got $code" >&2; exit 1; }

say "acquire a lease with the client's key, reach the agent, release it"
export NATS_NKEY="$CORRAL_NATS_AUTH/client.nk"
lease=$(cli acquire example --json --timeout 30s --holder compose-check) # its token is not printed
lease_id=$(node -e 'console.log(JSON.parse(process.argv[1]).leaseId)' "$lease")
url=$(node -e 'console.log(JSON.parse(process.argv[1]).urls[0])' "$lease")
echo "lease $lease_id: $url"
agent=$(curl -sf --max-time 5 "$url")
echo "$url answered: $agent"
cli release "$lease_id"
unset NATS_NKEY

say "/metrics counts it"
scrape=$(curl -sf "$metrics")
grep -E '^corral_(lease_events_total|acquire_seconds_count)\{pool="example"' <<<"$scrape"
grep -q '^corral_lease_events_total{pool="example",event="granted"} 1$' <<<"$scrape" || { echo "no granted lease counted" >&2; exit 1; }
grep -q '^corral_lease_events_total{pool="example",event="released"} 1$' <<<"$scrape" || { echo "no release counted" >&2; exit 1; }
grep -q '^corral_acquire_seconds_count{pool="example",outcome="granted"} 1$' <<<"$scrape" || { echo "no acquire timed" >&2; exit 1; }

say "docker-compose down -v"
docker-compose down -v --remove-orphans --timeout 10
[[ -z $(left) ]] || { echo "containers left after docker-compose down" >&2; exit 1; }
echo "compose check passed in $((SECONDS - started)) s"
