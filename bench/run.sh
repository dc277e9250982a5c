#!/usr/bin/env bash
# Runs the side-by-side benchmarks (Iris, NATS, raw TCP) and summarizes them.
#
#   bench/run.sh                        # every benchmark, 6 rounds of 1s each
#   COUNT=10 BENCH=Request bench/run.sh
#
# Environment:
#   COUNT      rounds (default 6, the fewest for which benchstat gives a
#              confidence interval)
#   BENCHTIME  -benchtime of each benchmark in a round (default 1s)
#   BENCH      -bench regexp (default .)
#
# Each round runs every selected benchmark once (-count=1), so the samples
# of the systems compared are interleaved in time rather than taken in one
# block each: on a shared, noisy machine a slow spell then hits every system
# instead of one. Raw output goes to bench/results/latest.txt; then the
# medians and the iris/nats and iris/tcp ratios (cmd/benchratio) are
# printed, and benchstat's table with NATS as the base column, installing
# benchstat if it is missing.
set -euo pipefail
cd "$(dirname "$0")"

count=${COUNT:-6}
benchtime=${BENCHTIME:-1s}
bench=${BENCH:-.}
out=results/latest.txt
bin=results/bench.test
mkdir -p results

go test -c -o "$bin" .
: >"$out"
for round in $(seq "$count"); do
	echo "== round $round of $count" >&2
	"$bin" -test.run '^$' -test.bench "$bench" -test.benchmem -test.count 1 \
		-test.benchtime "$benchtime" -test.timeout 30m | tee -a "$out"
done

echo
echo "== medians of $count rounds and ratios (below 1: iris takes less time)"
go run ./cmd/benchratio "$out"

benchstat=$(command -v benchstat || true)
if [[ -z $benchstat ]]; then
	gobin=$(go env GOBIN)
	benchstat=${gobin:-$(go env GOPATH)/bin}/benchstat
	if [[ ! -x $benchstat ]]; then
		echo "== installing benchstat" >&2
		go install golang.org/x/perf/cmd/benchstat@latest || benchstat=
	fi
fi
if [[ -n $benchstat && -x $benchstat ]]; then
	echo
	echo "== benchstat (base column: nats)"
	"$benchstat" -col /sys "$out"
else
	echo "benchstat unavailable: only the table above" >&2
fi
