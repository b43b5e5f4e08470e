#!/usr/bin/env bash
# The fresh-machine check (issue 8's "Done when"), reproducible on any Debian host with a Docker
# engine, without pulling an image: debootstrap builds a bookworm rootfs from the Debian mirror,
# this host's own node and npm are copied into it (bookworm's nodejs is 18) and nothing else,
# `docker import` makes it an image, and containers from it run a clean clone of HEAD:
#   start   npm ci && npm start, as root, on a terminal (a pty): corral installs nats-server with
#           apt itself (one line), reports a warm pool within 2 minutes (no engine inside: process
#           runtime, one warning); then Ctrl-C typed on that terminal, and nothing may be left running
#   test    npm test (no engine inside: the Docker tests skip and say why)
#   docker  npm test with the host's /var/run/docker.sock (and its network): the Docker tests run
# Not run by CI. Needs root, docker, debootstrap (apt-get install debootstrap), node >= 20.19.
#   scripts/fresh-machine-check.sh [start] [test] [docker]        default: all three
# MIRROR=http://deb.debian.org/debian; KEEP_IMAGE=1 keeps corral-ci/bookworm-fresh:local for a
# later run (reused when present). Everything else it makes (containers labelled
# corral-ci.fresh-machine=<run>, the temp dir, a corral/node image the docker stage made) is
# removed at exit. Nothing is committed or pulled: no rootfs, no binaries, no registry image.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
stages=("$@")
((${#stages[@]})) || stages=(start test docker)
mirror=${MIRROR:-http://deb.debian.org/debian}
image=corral-ci/bookworm-fresh:local
run=fmc-$$
work=$(mktemp -d /tmp/corral-fresh-machine.XXXXXX)
made_image=0

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cleanup() {
  local ids
  ids=$(docker ps -aq --filter "label=corral-ci.fresh-machine=$run")
  [[ -z $ids ]] || docker rm -f $ids >/dev/null
  if [[ $made_image == 1 && ${KEEP_IMAGE:-} != 1 ]]; then docker rmi "$image" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # …so that cleanup runs on Ctrl-C too

[[ $(id -u) == 0 ]] || { echo "run as root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 1; }

# --- the image: minimal bookworm + this host's node and npm ------------------------------------
if docker image inspect "$image" >/dev/null 2>&1; then
  say "image $image exists; reused (docker rmi it to rebuild)"
else
  say "debootstrap bookworm from $mirror"
  t=$SECONDS
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; exit 1; }
  echo "rootfs in $((SECONDS - t)) s"
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb

  node=$(node -p process.execPath)
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")") # …/node_modules/npm
  say "node $(node --version) from $node, npm $(npm --version) from $npm_dir"
  install -D -m 755 "$node" "$work/rootfs/usr/local/bin/node"
  mkdir -p "$work/rootfs/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$work/rootfs/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/rootfs/usr/local/bin/npx"
  # node's shared libraries must come from bookworm itself, not from this host.
  for lib in $(ldd "$node" | awk '/=>/ { print $1 }'); do
    compgen -G "$work/rootfs/usr/lib/*/$lib" >/dev/null || { echo "bookworm lacks $lib (node needs it)" >&2; exit 1; }
  done

  say "docker import → $image"
  tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' --change 'LABEL corral-ci.fresh-machine=image' \
    - "$image" >/dev/null
  made_image=1
  rm -rf "$work/rootfs"
fi

say "clean clone of $(git -C "$repo" rev-parse --short HEAD)"
git clone --quiet "$repo" "$work/repo"

# Runs $2 (a bash script) as root in a fresh container with the clone at /corral; $1 names it,
# further arguments go to docker run.
in_container() {
  local name=$1 script=$2
  shift 2
  local ctr="corral-fmc-$$-$name" trust=()
  # Where this host reaches the registry through a TLS-inspecting proxy, node trusts its CA by
  # NODE_EXTRA_CA_CERTS: the container gets that one file (a fresh machine does not need it).
  if [[ -r ${NODE_EXTRA_CA_CERTS:-} ]]; then
    trust=(-v "$NODE_EXTRA_CA_CERTS:/etc/corral-fmc-ca.crt:ro" -e NODE_EXTRA_CA_CERTS=/etc/corral-fmc-ca.crt)
  fi
  docker create --init --name "$ctr" --label "corral-ci.fresh-machine=$run" -w /corral "${trust[@]}" "$@" \
    "$image" bash -c "$script" >/dev/null
  docker cp "$work/repo/." "$ctr:/corral"
  docker start -a "$ctr"
}

# In the container: what still runs besides PID 1 (docker-init) and this shell.
survivors_fn='survivors() {
  local p c s out=""
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == 1 || $p == $$ || $p == $BASHPID ]] && continue
    read -r -d "" c <"/proc/$p/cmdline" 2>/dev/null || true
    read -r _ _ s _ <"/proc/$p/stat" 2>/dev/null || continue
    [[ $s == Z ]] && continue
    out+="  $p $c"$'\''\n'\''
  done
  printf %s "$out"
}'

status=0
for stage in "${stages[@]}"; do
  case $stage in
  start)
    say "start: npm ci && npm start on a terminal, then Ctrl-C on it"
    in_container start "$survivors_fn"'
      set -u
      ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }
      t0=$(ms)
      npm ci --no-audit --no-fund >/tmp/ci.log 2>&1 || { tail -30 /tmp/ci.log; echo "FAIL: npm ci"; exit 1; }
      t1=$(ms)
      echo "npm ci: $(((t1 - t0) / 1000)) s"
      # npm start on a terminal of its own (script(1) gives it a pty); Ctrl-C is the byte 0x03
      # typed on it, so the terminal itself signals the foreground process group, as in real life.
      mkfifo /tmp/keys
      exec 3<>/tmp/keys
      script -qfec "npm start" /tmp/start.log </tmp/keys >/dev/null 2>&1 &
      term=$!
      screen() { sed "s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\r//g" /tmp/start.log | awk "!seen[\$0]++"; }
      warm=""
      while (( $(ms) - t1 < 120000 )); do
        grep -q " idle 2 " /tmp/start.log && { warm=$(ms); break; }
        kill -0 "$term" 2>/dev/null || break
        sleep 0.2
      done
      echo "--- npm start on its terminal, until the pool was warm (each line once) ---"; screen; echo "---"
      if [[ -z $warm ]]; then echo "FAIL: no warm pool within 2 minutes of npm start"; kill -KILL "$term"; exit 1; fi
      echo "warm pool: $(((warm - t1) / 1000)).$(((warm - t1) % 1000 / 100)) s after npm start, $(((warm - t0) / 1000)) s after npm ci began"
      fail=0
      n=$(grep -c "installing it: apt-get" /tmp/start.log || true)
      [[ $n == 1 ]] || { echo "FAIL: expected one line saying nats-server is installed with apt-get, saw $n"; fail=1; }
      command -v nats-server >/dev/null || { echo "FAIL: nats-server is not installed"; fail=1; }
      n=$(screen | grep -c "WARN" || true)
      screen | grep "WARN" || true
      [[ $n == 1 ]] || { echo "FAIL: expected one warning line (no Docker engine: process runtime), saw $n"; fail=1; }
      lines=$(screen | wc -l)
      s0=$(ms)
      printf "\x03" >&3
      while kill -0 "$term" 2>/dev/null && (( $(ms) - s0 < 60000 )); do sleep 0.1; done
      wait "$term"; code=$?
      echo "Ctrl-C on its terminal: npm start exited $code after $(( ($(ms) - s0) / 100 ))00 ms"
      echo "--- after Ctrl-C ---"; screen | tail -n +"$((lines + 1))"; echo "---"
      sleep 1
      left=$(survivors)
      if [[ -n $left ]]; then echo "FAIL: still running after Ctrl-C:"; echo "$left"; fail=1; else echo "nothing left running"; fi
      screen | grep -q "stopped; nothing left running" || { echo "FAIL: no \"stopped; nothing left running\""; fail=1; }
      if screen | grep -qE "^\s+at |Error"; then echo "FAIL: a stack trace or error on screen"; fail=1; fi
      exit $fail
    ' --network bridge || status=1
    ;;
  test | docker)
    args=()
    images_before=$(docker images --format '{{.Repository}}:{{.Tag}}' 'corral/node')
    [[ $stage == docker ]] && args=(--network host -v /var/run/docker.sock:/var/run/docker.sock -e CORRAL_REQUIRE_DOCKER=1)
    say "$stage: npm ci && npm test$([[ $stage == docker ]] && echo ' (the host engine through its socket)')"
    in_container "$stage" "$survivors_fn"'
      set -u
      npm ci --no-audit --no-fund >/tmp/ci.log 2>&1 || { tail -30 /tmp/ci.log; echo "FAIL: npm ci"; exit 1; }
      t0=$SECONDS
      npm test; code=$?
      echo "npm test exited $code in $((SECONDS - t0)) s"
      sleep 1
      left=$(survivors)
      [[ -z $left ]] || { echo "FAIL: still running after npm test:"; echo "$left"; code=1; }
      exit $code
    ' "${args[@]}" || status=1
    if [[ $stage == docker ]]; then
      # The built-in agent's image, made on the host's engine from the container's node and
      # libraries (the digest differs from the host's own when the libraries do): removed again.
      for img in $(docker images --format '{{.Repository}}:{{.Tag}}' 'corral/node'); do
        grep -qxF "$img" <<<"$images_before" || { docker rmi "$img" >/dev/null && echo "removed $img (made by the tests)"; }
      done
    fi
    ;;
  *)
    echo "unknown stage: $stage (start, test, docker)" >&2
    exit 2
    ;;
  esac
done
say "$([[ $status == 0 ]] && echo "all passed: ${stages[*]}" || echo "FAILED (see above)")"
exit $status
