#!/usr/bin/env bash
# The search benchmark as reported in BENCHMARKS.md ("Search: crl against random, evolution and TPE").
# Seeds 0-1 chose crl's settings (benchmarks/results/search_dev/); the benchmark uses seeds 2 and up.
# Records are appended to the .jsonl files; a step can be re-run for other seeds alone.
# Run from a frozen copy of the code (git worktree) so that edits during the run do not change it:
#   git worktree add /tmp/benchtree HEAD && cd /tmp/benchtree && PYTHONPATH=$PWD RESULTS=/path/to/results ./benchmarks/results/search/run_all.sh
set -u
cd "$(dirname "$0")/../../.."
R=${RESULTS:-benchmarks/results/search}
A=random,evolution,tpe,crl
L=params=0.5,0.25,0.1,0.05
S="python benchmarks/bench_search.py --jobs 2 --evaluations 512"
# -- ran (2026-12-01) --------------------------------------------------------------------------------
$S --seeds 2 3 4 5 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents $A --out $R/vgg11_params.jsonl
$S --seeds 2 3 4 --configs configs/bench/small_cnn_digits.yaml --levels $L --agents $A --out $R/small_cnn_digits_params.jsonl
$S --seeds 2 3 4 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents crl --set crl.budget_conditioned=false --out $R/vgg11_params_crl_per_level.jsonl
python benchmarks/bench_scores.py --configs configs/bench/small_cnn_digits.yaml configs/bench/vgg11_mnist.yaml --budgets 0.25 0.1 --candidates 64 --jobs 2 --out ${SCORES:-benchmarks/results/scores/scores.jsonl}
$S --seeds 2 3 4 --configs configs/bench/user_cnn_mnist.yaml --levels $L --agents $A --out $R/user_cnn_params.jsonl  # session 7
$S --seeds 2 3 --configs configs/bench/user_cnn_mnist.yaml --levels $L --agents sequential_random --out $R/user_cnn_seqrand.jsonl  # session 7
# session 8: crl with direction actions (now the default; recorded as crl_direction), and seeds 5-6 of the user-style CNN
D="--agents crl --set crl.action=\"direction\" --label crl_direction"
$S --seeds 2 3 4 5 6 --configs configs/bench/user_cnn_mnist.yaml --levels $L $D --out $R/user_cnn_crl_direction.jsonl
$S --seeds 5 6 --configs configs/bench/user_cnn_mnist.yaml --levels $L --agents random,evolution,tpe --out $R/user_cnn_params.jsonl
$S --seeds 2 3 4 5 --configs configs/bench/vgg11_mnist.yaml --levels $L $D --out $R/vgg11_crl_direction.jsonl
$S --seeds 2 3 4 5 --configs configs/bench/small_cnn_digits.yaml --levels $L $D --out $R/small_cnn_crl_direction.jsonl
$S --seeds 2 3 --configs configs/bench/user_cnn_mnist.yaml --levels $L --agents crl --set crl.action=\"direction\" --set crl.budget_conditioned=false --label crl_direction_per_level --out $R/user_cnn_crl_direction_per_level.jsonl
# session 9: seed 6 of small_cnn (crl direction and the baselines); a MACs budget on VGG11 (seeds 2-4)
$S --seeds 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --agents random,evolution,tpe --out $R/small_cnn_digits_params.jsonl
$S --seeds 6 --configs configs/bench/small_cnn_digits.yaml --levels $L $D --out $R/small_cnn_crl_direction.jsonl
$S --seeds 2 3 4 --configs configs/bench/vgg11_mnist.yaml --levels macs=0.1 --agents random,evolution,tpe --out $R/vgg11_macs.jsonl
$S --seeds 2 3 4 --configs configs/bench/vgg11_mnist.yaml --levels macs=0.1 $D --out $R/vgg11_macs.jsonl
python benchmarks/bench_search.py --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --set rerank.top_k=16 --agents random --label random_top16 --out $R/small_cnn_top16.jsonl
python benchmarks/bench_search.py --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --set rerank.top_k=16 --agents crl --set crl.action=\"direction\" --label crl_direction_top16 --out $R/small_cnn_top16.jsonl
python benchmarks/bench_search.py --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --set rerank.top_k=4 --agents random --label random_top4 --out $R/small_cnn_top4.jsonl
python benchmarks/bench_search.py --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --set rerank.top_k=4 --agents crl --set crl.action=\"direction\" --label crl_direction_top4 --out $R/small_cnn_top4.jsonl
# session 10: seed 6 of VGG11 (crl direction and the baselines)
$S --seeds 6 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents random,evolution,tpe --out $R/vgg11_params.jsonl
$S --seeds 6 --configs configs/bench/vgg11_mnist.yaml --levels $L $D --out $R/vgg11_crl_direction.jsonl
# session 10: the latency budget, seeds 2-4, one run at a time (latency is measured)
python benchmarks/bench_search.py --jobs 1 --evaluations 512 --seeds 2 3 4 --configs configs/bench/vgg11_mnist.yaml --levels latency_ms=rel:0.5 --agents random,evolution,tpe --out $R/vgg11_latency.jsonl
python benchmarks/bench_search.py --jobs 1 --evaluations 512 --seeds 2 3 4 --configs configs/bench/vgg11_mnist.yaml --levels latency_ms=rel:0.5 $D --out $R/vgg11_latency.jsonl
# session 11: the latency budget after the steering fix (random, evolution, tpe; seeds 2-4), then old vs new code
# side by side (two frozen worktrees: /tmp/old at 67fd820, /tmp/lat at e44f012; each pair back to back)
python benchmarks/bench_search.py --jobs 1 --evaluations 512 --seeds 2 3 4 --configs configs/bench/vgg11_mnist.yaml --levels latency_ms=rel:0.5 --agents random,evolution,tpe --out $R/vgg11_latency_session11.jsonl
#   for seed in 2 3 4; for agent in evolution random; for tree in old lat (order alternating):
#   (cd /tmp/$tree && PYTHONPATH=$PWD python benchmarks/bench_search.py --jobs 1 --evaluations 512 --seeds $seed \
#     --configs configs/bench/vgg11_mnist.yaml --levels latency_ms=rel:0.5 --agents $agent --label ${agent}_$tree \
#     --rows ROWS/${agent}_${tree}_$seed --out $R/paired_latency.jsonl)   # the rows' columns: paired_latency_rows.csv.gz
# session 12: the latency budget judged on a ratio timed together (costs.latency.paired); all agents, seeds 2-4,
# one run at a time, each run's search rows kept (--rows) to read the evaluator's base timings (ran: crl seeds 2-4 first, then seed by seed random, evolution, tpe)
for seed in 2 3 4; do for agent in crl random evolution tpe; do
  python benchmarks/bench_search.py --jobs 1 --evaluations 512 --seeds $seed --configs configs/bench/vgg11_mnist.yaml \
    --levels latency_ms=rel:0.5 --agents $agent --rows ROWS/${agent}_$seed --out $R/vgg11_latency_paired.jsonl
done; done
# session 12: 2,048 candidates on small_cnn, all agents, seeds 2-4 (16:40-16:57 UTC)
python benchmarks/bench_search.py --jobs 2 --evaluations 2048 --seeds 2 3 4 --configs configs/bench/small_cnn_digits.yaml --levels $L --agents $A --out $R/small_cnn_params_2048.jsonl
# -- not run yet ------------------------------------------------------------------------------------
# (crl here is the default since session 8, action: direction; the rows above labelled crl are action: ratio)
$S --seeds 2 3 4 --configs configs/bench/resnet20_mnist.yaml --levels $L --agents $A --out $R/resnet20_params.jsonl
python benchmarks/bench_search.py --jobs 2 --evaluations 2048 --seeds 2 3 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents random,evolution,crl --out $R/vgg11_params_2048.jsonl
# session 15 (frozen worktree at 5239b36, before the crl random-streams fix): every agent side by side on seeds 2-6,
# and crl with Monte Carlo returns (gamma = gae_lambda = 1); the user CNN's crl_mc run was not made (stopped after small_cnn's result)
for cfg in small_cnn_digits user_cnn_mnist; do
  python benchmarks/bench_search.py --jobs 2 --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/$cfg.yaml --levels $L --agents random,evolution,tpe,crl --out $R/${cfg}_s15.jsonl
done
python benchmarks/bench_search.py --jobs 2 --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --agents crl --set crl.gamma=1.0 --set crl.gae_lambda=1.0 --label crl_mc --out $R/small_cnn_digits_crl_mc_s15.jsonl
# session 15 (worktree at 25e67a7): VGG11 side by side, every agent
python benchmarks/bench_search.py --jobs 2 --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents crl,random,evolution,tpe --out $R/vgg11_mnist_s15.jsonl
# session 15, development seeds, search only, crl in step against crl with overlapping batches (search.crl.pipeline)
#   for cfg/seeds in small_cnn_digits/"0 1 7 8 9 10" vgg11_mnist/"0 1 7 8":
#   python benchmarks/bench_search.py --jobs 1 --evaluations 512 --no-final --overlap --seeds $S --configs configs/bench/$cfg.yaml --levels $L \
#     --agents crl [--set crl.pipeline=true --label crl_pipe] --out benchmarks/results/search_dev/..._s15.jsonl
# session 16: ResNet-20, every agent side by side, the product's batch order (--overlap); seeds 2-4, then 5-6
$S --overlap --seeds 2 3 4 5 6 --configs configs/bench/resnet20_mnist.yaml --levels $L --agents crl,evolution,random,tpe --out $R/resnet20_mnist_s16.jsonl
# session 17 (frozen worktree at 640ca32, --overlap): crl with self-imitation on small_cnn, then every agent with today's code
#   development seeds, search only: --no-final --overlap --seeds 0 1 7 8 9 10 (small_cnn) / 0 1 (resnet20), agents crl and
#   crl --set crl.replay_elites=8 --label crl_sil8 (and evolution,tpe on small_cnn) -> benchmarks/results/search_dev/*_crl_sil_s17.jsonl
$S --overlap --seeds 2 3 4 5 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --agents crl --set crl.replay_elites=8 --label crl_sil8 --out $R/small_cnn_digits_s17.jsonl
$S --overlap --seeds 2 3 4 5 6 --configs configs/bench/small_cnn_digits.yaml --levels $L --agents crl,random,evolution,tpe --out $R/small_cnn_digits_s17.jsonl
$S --overlap --seeds 2 3 4 5 6 --configs configs/bench/user_cnn_mnist.yaml --levels $L --agents crl,evolution,tpe --out $R/user_cnn_mnist_s17.jsonl
$S --overlap --seeds 2 --configs configs/bench/user_cnn_mnist.yaml --levels $L --agents random --out $R/user_cnn_mnist_s17.jsonl   # identical to session 15's
$S --overlap --seeds 2 3 4 5 6 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents evolution,tpe --out $R/vgg11_mnist_s17.jsonl
$S --overlap --seeds 2 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents crl --out $R/vgg11_mnist_s17.jsonl   # identical to session 15's
# session 17: VGG11 at 2,048 candidates, seed 2 (seeds 3-4 not run yet)
python benchmarks/bench_search.py --jobs 2 --overlap --evaluations 2048 --seeds 2 --configs configs/bench/vgg11_mnist.yaml --levels $L --agents crl,random,evolution,tpe --out $R/vgg11_mnist_2048_s17.jsonl

# session 18 (2026-12-03): small_cnn seeds 7-16 (all four agents, product's order); VGG11-BN 2,048 candidates seeds 3-4
python benchmarks/bench_search.py --jobs 1 --overlap --evaluations 512 --seeds 7 8 9 10 11 12 13 14 15 16 --configs configs/bench/small_cnn_digits.yaml --levels params=0.5,0.25,0.1,0.05 --agents crl,random,evolution,tpe --out benchmarks/results/search/small_cnn_digits_s18.jsonl
python benchmarks/bench_search.py --jobs 2 --overlap --evaluations 2048 --seeds 3 4 --configs configs/bench/vgg11_mnist.yaml --levels params=0.5,0.25,0.1,0.05 --agents crl,random,evolution,tpe --out benchmarks/results/search/vgg11_mnist_2048_s17.jsonl
python benchmarks/bench_search.py --jobs 2 --overlap --evaluations 512 --seeds 17 18 19 20 21 22 23 24 25 26 --configs configs/bench/small_cnn_digits.yaml --levels params=0.5,0.25,0.1,0.05 --agents crl,random,evolution,tpe --out benchmarks/results/search/small_cnn_digits_s18b.jsonl
# seeds a 0.3-point paired difference needs, per model and level
R=benchmarks/results/search
python benchmarks/bench_search.py --power 0.3 --summarise $R/small_cnn_digits_s17.jsonl:crl,random,evolution,tpe $R/small_cnn_digits_s18.jsonl $R/small_cnn_digits_s18b.jsonl $R/user_cnn_mnist_s17.jsonl:crl,evolution,tpe $R/user_cnn_mnist_s15.jsonl:random $R/vgg11_mnist_s17.jsonl:evolution,tpe $R/vgg11_mnist_s15.jsonl:crl,random $R/resnet20_mnist_s16.jsonl:crl,random,evolution,tpe

# session 19: every agent on the converged user CNN at its informative levels (BENCHMARKS.md "Is the search blind?")
python benchmarks/bench_search.py --jobs 2 --overlap --evaluations 512 --seeds 2 3 4 5 6 \
    --configs configs/bench/user_cnn_trained_mnist.yaml --levels params=0.5,0.35 --agents crl,random,evolution,tpe \
    --out benchmarks/results/search/user_cnn_trained_s19.jsonl

# session 20: the weak threshold on a converged ResNet-20 (retained as a search measures it) and the finetune score
# at a weak level (BENCHMARKS.md "Is the search blind?")
python benchmarks/bench_search.py --jobs 1 --overlap --evaluations 512 --seeds 2 --configs configs/bench/resnet20_trained_mnist.yaml \
    --levels params=0.1,0.05,0.03 --agents random --no-final --out benchmarks/results/search/resnet20_trained_nofinal_s20.jsonl
python benchmarks/bench_scores.py --configs configs/bench/resnet20_trained_mnist.yaml --budgets 0.05 0.1 --candidates 16 \
    --out benchmarks/results/scores/resnet20_trained.jsonl
for S in 2 3 4 5 6; do
  python benchmarks/bench_search.py --jobs 1 --overlap --evaluations 512 --seeds $S --configs configs/bench/user_cnn_trained_mnist.yaml \
      --levels params=0.1 --agents random --out benchmarks/results/search/weak_score_s20.jsonl
  python benchmarks/bench_search.py --jobs 1 --overlap --evaluations 64 --seeds $S --configs configs/bench/user_cnn_trained_mnist.yaml \
      --levels params=0.1 --agents random --set 'score="finetune"' --label random_finetune --out benchmarks/results/search/weak_score_s20.jsonl
done
# session 20: crl, random and evolution at the converged CNN's 25 % level
for S in 2 3 4 5 6; do
  python benchmarks/bench_search.py --jobs 1 --overlap --evaluations 512 --seeds $S --configs configs/bench/user_cnn_trained_mnist.yaml \
      --levels params=0.25 --agents crl,random,evolution --out benchmarks/results/search/user_cnn_trained_25_s20.jsonl
done
# session 21: cheaper scores than the 30-iteration re-rank, on candidates whose finals are measured (the bases are
# pinned in benchmarks/bases/ from session 21 on; BENCHMARKS.md "Is the search blind?")
python benchmarks/bench_scores.py --configs configs/bench/user_cnn_trained_mnist.yaml --budgets 0.1 0.25 --candidates 24 --jobs 2 \
    --out benchmarks/results/scores/user_cnn_trained_s21.jsonl
python benchmarks/bench_score_probe.py --rows benchmarks/results/scores/resnet20_trained.jsonl \
    --out benchmarks/results/scores/probe_resnet20_trained.jsonl
python benchmarks/bench_score_probe.py --rows benchmarks/results/scores/user_cnn_trained_s21.jsonl \
    --out benchmarks/results/scores/probe_user_cnn_trained.jsonl
# (session 23: the session-22 lines below run with --set rerank.weak_global=false, as their rows were made)
# session 22: the uniform candidate at the converged models' weak levels, and the weak-level uniform finalist in the product
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --evaluations 1 --seeds 2 3 4 5 6 --configs configs/bench/user_cnn_trained_mnist.yaml \
    --levels params=0.1 --agents uniform --out benchmarks/results/search/uniform_user_cnn_trained_s22.jsonl
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --evaluations 1 --seeds 2 3 4 --configs configs/bench/resnet20_trained_mnist.yaml \
    --levels params=0.1,0.05 --agents uniform --out benchmarks/results/search/uniform_resnet20_trained_s22.jsonl
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/user_cnn_trained_mnist.yaml \
    --levels params=0.1 --agents random --out benchmarks/results/search/weak_uniform_user_cnn_trained_s22.jsonl
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --evaluations 512 --seeds 2 3 4 --configs configs/bench/resnet20_trained_mnist.yaml \
    --levels params=0.1,0.05 --agents random --out benchmarks/results/search/weak_uniform_resnet20_trained_s22.jsonl
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --evaluations 512 --seeds 2 3 4 --configs configs/bench/resnet20_trained_mnist.yaml \
    --levels params=0.1,0.05 --agents random --set rerank.weak_uniform=false --label random_no_uniform \
    --out benchmarks/results/search/weak_uniform_resnet20_trained_s22.jsonl
# session 22: does the search beat uniform pruning? The uniform candidate at every level of the four search-benchmark
# models (small_cnn against the 25-seed rows of sessions 17-18, same base); random search again on the other three,
# whose bases were retrained in this environment (BENCHMARKS.md "Does the search beat uniform pruning?")
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --evaluations 4 --seeds $(seq 2 26) --configs configs/bench/small_cnn_digits.yaml \
    --levels params=0.5,0.25,0.1,0.05 --agents uniform --out benchmarks/results/search/uniform_small_cnn_digits_s22.jsonl
for cfg in user_cnn_mnist resnet20_mnist vgg11_mnist; do
  python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --evaluations 4 --seeds 2 3 4 5 6 --configs configs/bench/$cfg.yaml \
      --levels params=0.5,0.25,0.1,0.05 --agents uniform --out benchmarks/results/search/uniform_${cfg}_s22.jsonl
done
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --overlap --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/user_cnn_mnist.yaml \
    --levels params=0.5,0.25,0.1,0.05 --agents random --out benchmarks/results/search/random_user_cnn_mnist_s22.jsonl
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --overlap --evaluations 512 --seeds 2 3 4 5 6 --configs configs/bench/resnet20_mnist.yaml \
    --levels params=0.5,0.25,0.1,0.05 --agents random --out benchmarks/results/search/random_resnet20_mnist_s22.jsonl
python benchmarks/bench_search.py --set rerank.weak_global=false --jobs 2 --overlap --evaluations 512 --seeds 2 3 --configs configs/bench/vgg11_mnist.yaml \
    --levels params=0.5,0.25,0.1,0.05 --agents random --out benchmarks/results/search/random_vgg11_mnist_s22.jsonl
# session 23: global pruning (the global agent) at the converged models' weak levels (R1) and at every level of the
# four search-benchmark models (R2), paired with session 22's rows (BENCHMARKS.md "Global pruning")
python benchmarks/bench_search.py --jobs 2 --evaluations 1 --seeds 2 3 4 5 6 --configs configs/bench/user_cnn_trained_mnist.yaml \
    --levels params=0.1 --agents global --out benchmarks/results/search/global_user_cnn_trained_s23.jsonl
python benchmarks/bench_search.py --jobs 2 --evaluations 1 --seeds 2 3 4 --configs configs/bench/resnet20_trained_mnist.yaml \
    --levels params=0.1,0.05 --agents global --out benchmarks/results/search/global_resnet20_trained_s23.jsonl
python benchmarks/bench_search.py --jobs 2 --evaluations 4 --seeds $(seq 2 26) --configs configs/bench/small_cnn_digits.yaml \
    --levels params=0.5,0.25,0.1,0.05 --agents global --out benchmarks/results/search/global_small_cnn_digits_s23.jsonl
for cfg in user_cnn_mnist resnet20_mnist; do
  python benchmarks/bench_search.py --jobs 2 --evaluations 4 --seeds 2 3 4 5 6 --configs configs/bench/$cfg.yaml \
      --levels params=0.5,0.25,0.1,0.05 --agents global --out benchmarks/results/search/global_${cfg}_s23.jsonl
done
python benchmarks/bench_search.py --jobs 2 --evaluations 4 --seeds 2 3 --configs configs/bench/vgg11_mnist.yaml \
    --levels params=0.5,0.25,0.1,0.05 --agents global --out benchmarks/results/search/global_vgg11_mnist_s23.jsonl
# session 26: a MACs and a latency budget on the two CNNs, and small_cnn at 2,048 candidates (BENCHMARKS.md,
# "A MACs and a latency budget on the two CNNs, and 2,048 candidates on small_cnn")
B26="python benchmarks/bench_search.py --jobs 2 --overlap --seeds 2 3 4 5 6 --agents crl,random,evolution,tpe"
$B26 --evaluations 512 --configs configs/bench/small_cnn_digits.yaml --levels macs=0.1 --out benchmarks/results/search/small_cnn_macs_s26.jsonl
$B26 --evaluations 512 --configs configs/bench/user_cnn_mnist.yaml --levels macs=0.1 --out benchmarks/results/search/user_cnn_macs_s26.jsonl
$B26 --evaluations 512 --configs configs/bench/user_cnn_mnist.yaml --levels latency_ms=rel:0.9 --out benchmarks/results/search/user_cnn_latency_s26.jsonl
$B26 --evaluations 2048 --configs configs/bench/small_cnn_digits.yaml --levels params=0.5,0.25,0.1,0.05 --out benchmarks/results/search/small_cnn_2048_s26.jsonl
# session 27: the user CNN's latency cell again on today's code (three-turn quiet timing), ResNet-20's MACs cell
# (BENCHMARKS.md, "The latency cell again on today's code, and ResNet-20's MACs cell")
B27="python benchmarks/bench_search.py --jobs 2 --overlap --seeds 2 3 4 5 6 --agents crl,random,evolution,tpe --evaluations 512"
$B27 --configs configs/bench/user_cnn_mnist.yaml --levels latency_ms=rel:0.9 --out benchmarks/results/search/user_cnn_latency_s27.jsonl
$B27 --configs configs/bench/resnet20_mnist.yaml --levels macs=0.1 --out benchmarks/results/search/resnet20_macs_s27.jsonl
$B27 --configs configs/bench/resnet20_mnist.yaml --levels latency_ms=rel:0.8 --out benchmarks/results/search/resnet20_latency_s27.jsonl  # stopped at 22:35 UTC after 17 runs
# session 28: ResNet-20's MACs cell at five more seeds (C4b; evolution/TPE stopped at 00:21 UTC after seeds 7-8 and
# evolution's 9) and a confirmation on ten fresh seeds (C4c, crl and random; stopped at 01:10 UTC)
B28="python benchmarks/bench_search.py --jobs 2 --overlap --evaluations 512 --configs configs/bench/resnet20_mnist.yaml --levels macs=0.1"
$B28 --seeds 7 8 9 10 11 --agents crl,random --out benchmarks/results/search/resnet20_macs_s28.jsonl
$B28 --seeds 7 8 9 10 11 --agents evolution,tpe --out benchmarks/results/search/resnet20_macs_s28.jsonl
$B28 --seeds 12 13 14 15 16 17 18 19 20 21 --agents crl,random --out benchmarks/results/search/resnet20_macs_c4c_s28.jsonl
# session 29: a ResNeXt-style CNN outside the zoo (grouped convs, channels pruned in blocks); the uniform runs
# registered after it did not start before the 03:55 UTC deadline (BENCHMARKS.md, "A ResNeXt-style CNN")
python benchmarks/bench_search.py --jobs 2 --overlap --evaluations 512 --configs configs/bench/resnext_trained_mnist.yaml \
    --levels params=0.5,0.25,0.1 --seeds 2 3 4 5 6 --agents crl,random --out benchmarks/results/search/resnext_s29.jsonl
# session 30: RX2, the uniform agent on the same cell (registered in session 29; BENCHMARKS.md "A ResNeXt-style CNN")
python benchmarks/bench_search.py --jobs 2 --overlap --evaluations 4 --configs configs/bench/resnext_trained_mnist.yaml \
    --levels params=0.5,0.25,0.1 --seeds 2 3 4 5 6 --agents uniform --out benchmarks/results/search/resnext_uniform_s30.jsonl
