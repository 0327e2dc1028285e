# The selection study as reported in BENCHMARKS.md ("Which shortlisted candidate to fine-tune").
# Run from a frozen copy of the code (git worktree), like the search benchmark:
#   git worktree add --detach /tmp/selw HEAD && cd /tmp/selw && PYTHONPATH=$PWD RESULTS=/path/to/results ./benchmarks/results/selection/run_all.sh
set -u
cd "$(dirname "$0")/../../.."
R=${RESULTS:-benchmarks/results/selection}
L=params=0.5,0.25,0.1,0.05
S="python benchmarks/bench_selection.py --jobs 2 --levels $L"
# session 10 (2026-12-02)
$S --configs configs/bench/small_cnn_digits.yaml --agents random,evolution,crl --seeds 2 3 4 5 6 --out $R/small_cnn.jsonl
$S --configs configs/bench/small_cnn_digits.yaml --agents random --seeds 2 3 4 5 6 --final-seeds 3 --out $R/small_cnn_seeds.jsonl
$S --configs configs/bench/vgg11_mnist.yaml --agents random,evolution --seeds 2 3 --top-k 8 --out $R/vgg11.jsonl
gzip -f $R/*.jsonl  # the committed records are gzipped (the summary reads .jsonl.gz as is)
for f in small_cnn small_cnn_seeds vgg11; do python benchmarks/bench_selection.py --summarise $R/$f.jsonl.gz; done

# session 19: the converged user CNN, levels 25/10 % (BENCHMARKS.md "Is the search blind?")
python benchmarks/bench_selection.py --configs configs/bench/user_cnn_trained_mnist.yaml --agents random --seeds 2 3 4 \
    --evaluations 512 --levels params=0.25,0.1 --top-k 16 --rerank-seeds 1 --final-seeds 1 \
    --out benchmarks/results/selection/user_cnn_trained_top16.jsonl   # gzipped after

# session 20: the weak-level finals on a converged ResNet-20 at 10/5 % (BENCHMARKS.md "Is the search blind?")
python benchmarks/bench_selection.py --configs configs/bench/resnet20_trained_mnist.yaml --agents random --seeds 2 3 4 \
    --evaluations 512 --levels params=0.1,0.05 --top-k 8 --rerank-seeds 1 --final-seeds 1 \
    --out benchmarks/results/selection/resnet20_trained_top8.jsonl   # gzipped after

# session 30 (E30): crl's and random search's shortlists on the ResNeXt-style CNN (BENCHMARKS.md "Which shortlisted
# candidate gets the final fine-tune", session 30)
python benchmarks/bench_selection.py --configs configs/bench/resnext_trained_mnist.yaml --agents crl,random --seeds 2 3 4 \
    --evaluations 512 --levels params=0.25,0.1 --top-k 8 --rerank-seeds 1 --final-seeds 1 --jobs 2 \
    --out benchmarks/results/selection/resnext_s30.jsonl   # gzipped after
