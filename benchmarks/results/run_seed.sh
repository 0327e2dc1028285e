#!/bin/bash
# Runs bench_quality.py for one seed from the code snapshot, retrying (with --resume) if Ray is killed under it.
S=/tmp/rayprune_snap_8d9cb26; R=/work/main/benchmarks/results; seed=$1
cd $S
for try in 1 2 3 4 5; do
  echo "=== try $try $(date -u +%FT%TZ)"
  PYTHONPATH=$S python benchmarks/bench_quality.py --seeds $seed --threads 1 --resume --out $R/quality_s$seed.csv
  echo "=== exit $? $(date -u +%FT%TZ)"
  [ -f $R/quality_s$seed.csv.done ] && break
  sleep 20
done
