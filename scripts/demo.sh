#!/usr/bin/env bash
# make demo: kube-apiserver-style audit logs rotate and compress while the
# agent ships them to a file; then count what was written, delivered, lost.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/audittail}
DIR=${DEMO_DIR:-.demo}
EVENTS=${EVENTS:-50000}
RATE=${RATE:-20000}

rm -rf "$DIR"
mkdir -p "$DIR"
cat >"$DIR/config.yaml" <<YAML
state_dir: $PWD/$DIR/state
inputs:
  - path: $PWD/$DIR/log/audit.log
    start_at: beginning
batch: {max_events: 1000, max_bytes: 4MiB, max_wait: 200ms}
metrics: {listen: "127.0.0.1:0"}
outputs:
  - name: demo-file
    type: file
    path: $PWD/$DIR/out/events.jsonl
YAML

echo "==> starting the agent (config: $DIR/config.yaml, log: $DIR/agent.log)"
"$BIN" run --config "$DIR/config.yaml" 2>"$DIR/agent.log" &
agent=$!
trap 'kill $agent 2>/dev/null || true' EXIT

echo "==> writing $EVENTS audit events at $RATE/s through lumberjack (maxsize 1 MB, compress), as kube-apiserver does"
"$BIN" gen --path "$DIR/log/audit.log" --events "$EVENTS" --rate "$RATE" --maxsize 1 --maxbackup 0 --compress --seed 42

echo "==> waiting for the agent to catch up"
for _ in $(seq 1 120); do
  got=$(wc -l <"$DIR/out/events.jsonl" 2>/dev/null || echo 0)
  [ "$got" -ge "$EVENTS" ] && break
  sleep 0.5
done
kill -TERM $agent
wait $agent || true
trap - EXIT

ids() { grep -o '"auditID":"[^"]*"' | sort; }
zcat -f "$DIR"/log/audit*.log* | ids >"$DIR/written.ids"
ids <"$DIR/out/events.jsonl" >"$DIR/delivered.ids"
written=$(wc -l <"$DIR/written.ids")
delivered=$(sort -u "$DIR/delivered.ids" | wc -l)
lines=$(wc -l <"$DIR/delivered.ids")
lost=$(comm -23 "$DIR/written.ids" <(sort -u "$DIR/delivered.ids") | wc -l)
dups=$((lines - delivered))
backups=$(ls "$DIR"/log | grep -c '^audit-' || true)
gz=$(ls "$DIR"/log | grep -c '\.gz$' || true)
rot=$(sed -n 's/.*msg=summary.* rotations=\([0-9]*\).*/\1/p' "$DIR/agent.log" | tail -1)
malformed=$(grep -vc '^{.*}$' "$DIR/out/events.jsonl" || true)

cat <<SUMMARY

audittail demo: $DIR/log (written) -> $DIR/out/events.jsonl (delivered)
  events written by gen ............ $written
  files rotated by lumberjack ...... $backups ($gz gzipped)
  rotations followed by the agent .. ${rot:-?}
  events delivered ................. $delivered
  lost ............................. $lost
  duplicates ....................... $dups
  malformed lines .................. $malformed
SUMMARY
if [ "$lost" -ne 0 ] || [ "$malformed" -ne 0 ] || [ "$written" -ne "$EVENTS" ]; then
  echo "demo FAILED: see $DIR/agent.log"; exit 1
fi
echo "demo OK: every event delivered exactly as written"
