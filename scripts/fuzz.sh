#!/usr/bin/env bash
# Runs every fuzz target of ./parser, ./policy, ./outputs/elasticsearch, ./outputs/syslog, ./outputs/ibmcloudlogs and ./outputs/internal/pargzip for FUZZTIME each (make fuzz-short, make fuzz).
# A run that ends with Go's "context deadline exceeded" and leaves no new
# crasher in testdata/fuzz is the fuzzing engine timing out on a loaded
# machine (golang/go#75804), not a finding: that target is run once more.
# Any other failure, or a crasher, fails at once.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}
cd "$(dirname "$0")/.."
for pkg in parser policy outputs/elasticsearch outputs/syslog outputs/ibmcloudlogs outputs/internal/pargzip; do
for t in $($GO test -list '^Fuzz' ./$pkg | grep '^Fuzz'); do
	for attempt in 1 2; do
		echo "fuzz $t for $FUZZTIME"
		before=$({ find $pkg/testdata/fuzz -type f 2>/dev/null || true; } | wc -l)
		if out=$($GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" ./$pkg 2>&1); then
			echo "$out" | tail -n 2
			break
		fi
		echo "$out"
		after=$({ find $pkg/testdata/fuzz -type f 2>/dev/null || true; } | wc -l)
		if [ "$attempt" = 1 ] && [ "$before" = "$after" ] && grep -q 'context deadline exceeded' <<<"$out"; then
			echo "fuzz $t: the fuzzing engine timed out without a finding (golang/go#75804); running it once more"
			continue
		fi
		exit 1
	done
done
done
