#!/bin/sh
# The full benchmark set behind docs/performance.md, on a quiet machine (~25 min).
# Usage: benchmarks/run_all.sh [out.jsonl]   (default docs/bench-results.jsonl), then
#        .venv/bin/python benchmarks/plot.py docs/bench-results.jsonl docs/
set -eu
OUT=${1:-docs/bench-results.jsonl}
K=${KANADE:-.venv/bin/kanade}
: > "$OUT"
run() { echo "+ kanade bench $*" >&2; "$K" bench "$@" | tee -a "$OUT"; }
run fanout --agents 100 --runs 5
run fanout --agents 1000 --runs 5
run fanout --agents 10000 --runs 5
run fanout --agents 100 --exec real --runs 3
run tick --agents 10000 --schedules 100
run scheduler --schedules 1000 --runs 3
run scheduler --schedules 250
run run-latency --agents 1 --agents 10 --agents 25 --agents 50 --starts 2
run throughput --agents 25 --jobs 50
run footprint --seconds 60 --swarm 1000
run ingest --results 20000 --runs 3
run ingest --results 20000 --runs 3 --store postgresql   # needs Debian's postgresql (make postgres-deps)
