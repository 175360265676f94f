#!/bin/bash
# OCI runtime-tools validation suite against runc, crun and keel-runc (make conformance).
#
# The suite's sources are not part of keel: RUNTIME_TOOLS_SRC names a GOPATH-style src directory holding
# github.com/opencontainers/runtime-tools (its validation/*/*.go and cmd/runtimetest, at commit 0105384, the commit
# Debian's golang-github-opencontainers-runtime-tools-dev packages) and the two Go packages Debian does not ship,
# github.com/mndrix/tap-go and github.com/google/uuid; everything else they import comes from Debian's
# /usr/share/gocode (GOPATH mode, GOPROXY=off: no network).
#
# Each test program runs from a work dir holding runtimetest and a busybox rootfs-amd64.tar.gz (built from
# /bin/busybox). A program fails when it exits non-zero, prints "not ok", or prints an "error" diagnostic and no
# "ok" line (the suite's lifecycle programs report failures as a YAML diagnostic under a "1..0" plan); it is
# skipped when its plan says SKIP and nothing failed; else it passes. Prints one line per program and runtime, then the counts; writes the
# table to $OUT/conformance.md.
#
# Usage: tests/conformance/run.sh [KEEL_RUNC]   (env: RUNTIMES="runc crun keel-runc", TESTS="hooks poststart ...",
#        OUT=build/conformance, PER_TEST_TIMEOUT=120)
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
keel=${1:-${KEEL_RUNC:-$repo/target/x86_64-unknown-linux-gnu/release/keel-runc}}
keel=$(realpath "$keel" 2>/dev/null || echo "$keel")
out=${OUT:-$repo/build/conformance}
runtimes=${RUNTIMES:-runc crun keel-runc}
per_test=${PER_TEST_TIMEOUT:-120}

[ "$(id -u)" = 0 ] || { echo "conformance: needs root"; exit 1; }
command -v go >/dev/null || { echo "conformance: go missing (make deps installs golang-go)"; exit 1; }
[ -d /usr/share/gocode/src/github.com/opencontainers/runtime-tools/generate ] ||
  { echo "conformance: golang-github-opencontainers-runtime-tools-dev missing (make deps)"; exit 1; }
[ -x "$keel" ] || { echo "conformance: keel-runc not built: $keel (make build)"; exit 1; }
srcdir=${RUNTIME_TOOLS_SRC:-}
[ -n "$srcdir" ] && [ -d "$srcdir/github.com/opencontainers/runtime-tools/validation" ] || {
  echo "conformance: set RUNTIME_TOOLS_SRC to a GOPATH src dir with github.com/opencontainers/runtime-tools (commit"
  echo "  0105384, with validation/ and cmd/runtimetest), github.com/mndrix/tap-go and github.com/google/uuid"
  exit 2
}

mkdir -p "$out/bin" "$out/work"
gp=$out/gopath
rm -rf "$gp" && mkdir -p "$gp/src" && cp -rp "$srcdir/." "$gp/src/"   # -p: unchanged sources keep their binaries
export GO111MODULE=off GOPATH="$gp:/usr/share/gocode" GOCACHE="$out/gocache" GOPROXY=off GOFLAGS= CGO_ENABLED=0
src=$gp/src/github.com/opencontainers/runtime-tools
tests=${TESTS:-$(cd "$src/validation" && for d in */; do d=${d%/}; [ "$d" != util ] && [ -f "$d/$d.go" ] && echo "$d"; done)}

echo "conformance: building runtimetest and $(echo $tests | wc -w) test programs (Go $(go env GOVERSION), offline)"
(cd "$src" && nice -n 10 go build -o "$out/work/runtimetest" ./cmd/runtimetest) || { echo "conformance: runtimetest does not build"; exit 1; }
for t in $tests; do
  [ "$out/bin/$t.t" -nt "$src/validation/$t/$t.go" ] 2>/dev/null && continue
  (cd "$src" && nice -n 10 go build -o "$out/bin/$t.t" "./validation/$t/$t.go") || echo "conformance: $t does not build"
done

# The suite's rootfs: busybox with its applets in /bin.
rf=$(mktemp -d)
mkdir -p "$rf/bin" "$rf/dev" "$rf/proc" "$rf/sys" "$rf/tmp" "$rf/etc" "$rf/root"
cp /bin/busybox "$rf/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rf/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rf/etc/passwd"; echo 'root:x:0:' > "$rf/etc/group"
tar -C "$rf" -czf "$out/work/rootfs-amd64.tar.gz" . && rm -rf "$rf"

# crun 1.8 refuses this hybrid cgroup layout unless the cgroup2 mount shows no controllers (field notes).
crun_wrap=$out/crun-hybrid
: > "$out/empty-controllers"
if [ -e /sys/fs/cgroup/unified/cgroup.controllers ]; then
  printf '#!/bin/sh\nexec unshare -m sh -c '\''mount --bind %s /sys/fs/cgroup/unified/cgroup.controllers && exec crun "$@"'\'' crun "$@"\n' \
    "$out/empty-controllers" > "$crun_wrap"
else
  printf '#!/bin/sh\nexec crun "$@"\n' > "$crun_wrap"
fi
chmod +x "$crun_wrap"

declare -A pass total skip
results=$out/results.tsv
: > "$results"
for rt in $runtimes; do
  case $rt in
    runc) bin=$(command -v runc) ;;
    crun) command -v crun >/dev/null || { echo "conformance: crun missing: skipped"; continue; }; bin=$crun_wrap ;;
    keel-runc) bin=$keel ;;
    *) bin=$rt ;;
  esac
  pass[$rt]=0; total[$rt]=0; skip[$rt]=0
  for t in $tests; do
    [ -x "$out/bin/$t.t" ] || continue
    total[$rt]=$((total[$rt] + 1))
    log=$out/logs/$rt/$t.tap
    mkdir -p "$(dirname "$log")"
    (cd "$out/work" && RUNTIME=$bin timeout -s KILL "$per_test" "$out/bin/$t.t" > "$log" 2>&1)
    rc=$?
    # An "error" diagnostic under an "ok" line is informational (an expected failure); with no test line at all it
    # is the program's verdict.
    nok=$(grep -c '^not ok' "$log"); nerr=0
    grep -q '^ok ' "$log" || nerr=$(grep -c '^ *"error":' "$log")
    if [ $rc != 0 ] || [ "$nok" != 0 ] || [ "$nerr" != 0 ]; then
      verdict="FAIL (rc $rc, $nok not ok, $nerr error diagnostics: $(grep -m1 '"error":' "$log" | cut -c1-150 | sed 's/^ *//'))"
    elif grep -q '^1\.\.0 *# *SKIP\|# SKIP' "$log" && ! grep -q '^ok [0-9]* [^#]*$' "$log"; then
      skip[$rt]=$((skip[$rt] + 1)); verdict=skip
    else
      pass[$rt]=$((pass[$rt] + 1)); verdict=pass
    fi
    printf '%s\t%s\t%s\n' "$t" "$rt" "$verdict" >> "$results"
    printf 'conformance: %-36s %-10s %s\n' "$t" "$rt" "$verdict"
  done
done

{
  printf '| test |'; for rt in $runtimes; do [ -n "${total[$rt]:-}" ] && printf ' %s |' "$rt"; done; echo
  printf '|---|'; for rt in $runtimes; do [ -n "${total[$rt]:-}" ] && printf -- '---|'; done; echo
  for t in $tests; do
    printf '| %s |' "$t"
    for rt in $runtimes; do
      [ -n "${total[$rt]:-}" ] || continue
      v=$(awk -F'\t' -v t="$t" -v r="$rt" '$1==t && $2==r {print $3}' "$results")
      case $v in pass) printf ' pass |' ;; skip) printf ' skip |' ;; "") printf ' - |' ;; *) printf ' FAIL |' ;; esac
    done
    echo
  done
  printf '| **passed / skipped / programs** |'
  for rt in $runtimes; do
    [ -n "${total[$rt]:-}" ] && printf ' %s / %s / %s |' "${pass[$rt]}" "${skip[$rt]}" "${total[$rt]}"
  done
  echo
} > "$out/conformance.md"
echo
cat "$out/conformance.md"
echo "conformance: TAP logs in $out/logs/RUNTIME/TEST.tap"
