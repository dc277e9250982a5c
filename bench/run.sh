#!/usr/bin/env bash
# Runs the side-by-side benchmarks (Iris, NATS, raw TCP) and summarizes them.
#
#   bench/run.sh                        # every benchmark, 3 rounds of 1s each, then profiles: ~10 min on 2 cores
#   COUNT=10 BENCH=Request bench/run.sh
#
# Environment:
#   COUNT      rounds (default 3; 6 is the fewest for which benchstat
#              gives a confidence interval)
#   BENCHTIME  -benchtime of each benchmark in a round (default 1s)
#   BENCH      -bench regexp (default .)
#   PROFILES   1 (default) also writes CPU and allocation profiles of Iris
#              on each streaming and request workload to bench/profiles/;
#              0 skips them
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

count=${COUNT:-3}
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

if [[ ${PROFILES:-1} == 1 ]]; then
	echo "== profiles of iris (bench/profiles/NAME-{cpu,mem}.pb.gz)" >&2
	mkdir -p profiles
	while read -r name pattern; do
		"$bin" -test.run '^$' -test.bench "$pattern" -test.benchmem -test.count 1 \
			-test.benchtime 2s -test.cpuprofile "profiles/$name-cpu.pb.gz" \
			-test.memprofile "profiles/$name-mem.pb.gz" -test.memprofilerate 65536 \
			-test.timeout 10m | grep '^Benchmark' >&2
	done <<-EOF
		request1 ^BenchmarkRequest$/^nodes=1$/^sys=iris$/^inflight=64$
		request2 ^BenchmarkRequest$/^nodes=2$/^sys=iris$/^inflight=64$
		pubsub1 ^BenchmarkPubSub$/^nodes=1$/^subs=1$/^size=64$/^sys=iris$
		pubsub2 ^BenchmarkPubSub$/^nodes=2$/^subs=1$/^size=64$/^sys=iris$
		pubsub1k1 ^BenchmarkPubSub$/^nodes=1$/^subs=1$/^size=1024$/^sys=iris$
		pubsub1k2 ^BenchmarkPubSub$/^nodes=2$/^subs=1$/^size=1024$/^sys=iris$
		fanout1 ^BenchmarkPubSub$/^nodes=1$/^subs=4$/^size=64$/^sys=iris$
		fanout2 ^BenchmarkPubSub$/^nodes=2$/^subs=4$/^size=64$/^sys=iris$
		tunnel1 ^BenchmarkTunnel$/^nodes=1$/^sys=iris$
		tunnel2 ^BenchmarkTunnel$/^nodes=2$/^sys=iris$
	EOF
	echo "   read one with: go tool pprof -top bench/results/bench.test bench/profiles/pubsub2-cpu.pb.gz" >&2
fi

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
