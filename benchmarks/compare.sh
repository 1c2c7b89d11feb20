#!/bin/sh
# Before/after comparison of two source trees in one run (issue #12: a restructure must stay
# within 10 %; issue #13: security — auth, TLS, signing — must keep every SPEC §10.2 target).
# Each benchmark runs on both trees back to back, alternating, so machine noise hits both
# alike. Each tree runs its own benchmark code, so "after" is secured wherever "before" was
# not. Usage:
#   benchmarks/compare.sh BEFORE_SRC AFTER_SRC [out.jsonl]
# where *_SRC are `src` directories (e.g. of a `git worktree add /tmp/before <commit>`).
# Every JSON line gets a "tree" field: "before" or "after".
set -eu
BEFORE=$1
AFTER=$2
OUT=${3:-docs/bench-compare.jsonl}
K=${KANADE:-.venv/bin/kanade}
: > "$OUT"
run() {
  for tree in before after; do
    if [ "$tree" = before ]; then src=$BEFORE; else src=$AFTER; fi
    echo "+ [$tree] kanade bench $*" >&2
    PYTHONPATH=$src "$K" bench "$@" | sed "s/^{/{\"tree\": \"$tree\", /" | tee -a "$OUT"
  done
}
run fanout --agents 1000 --runs 5
run fanout --agents 10000 --runs ${FANOUT_10K_RUNS:-3}
run ingest --results 20000 --runs 3
run run-latency --agents 25 --starts 2
run footprint --seconds 30 --swarm 1000
