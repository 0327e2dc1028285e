#!/usr/bin/env bash
# The search benchmark as reported in BENCHMARKS.md ("Search: crl against random, evolution and TPE").
# Seeds 2-6: seeds 0-1 were used to choose crl's settings (benchmarks/results/search_dev/).
set -u
cd "$(dirname "$0")/../../.."
R=benchmarks/results/search
B="python benchmarks/bench_search.py --seeds 2 3 4 5 6 --jobs 2"
$B --configs configs/bench/vgg11_mnist.yaml --levels params=0.5,0.25,0.1,0.05 --agents random,evolution,tpe,crl --evaluations 512 --out $R/vgg11_params.jsonl
$B --configs configs/bench/small_cnn_digits.yaml --levels params=0.5,0.25,0.1,0.05 --agents random,evolution,tpe,crl --evaluations 512 --out $R/small_cnn_digits_params.jsonl
$B --configs configs/bench/vgg11_mnist.yaml --levels params=0.5,0.25,0.1,0.05 --agents crl --set crl.budget_conditioned=false --evaluations 512 --out $R/vgg11_params_crl_per_level.jsonl
$B --configs configs/bench/resnet20_mnist.yaml --levels params=0.5,0.25,0.1,0.05 --agents random,evolution,tpe,crl --evaluations 512 --out $R/resnet20_params.jsonl
$B --configs configs/bench/user_cnn_mnist.yaml --levels params=0.5,0.25,0.1,0.05 --agents random,evolution,tpe,crl --evaluations 512 --out $R/user_cnn_params.jsonl
$B --configs configs/bench/vgg11_mnist.yaml --levels macs=0.1 --agents random,evolution,tpe,crl --evaluations 512 --out $R/vgg11_macs.jsonl
$B --configs configs/bench/vgg11_mnist.yaml --levels latency_ms=rel:0.5 --agents random,evolution,tpe,crl --evaluations 512 --out $R/vgg11_latency.jsonl
python benchmarks/bench_search.py --seeds 2 3 4 --jobs 2 --configs configs/bench/vgg11_mnist.yaml --levels params=0.5,0.25,0.1,0.05 --agents random,evolution,tpe,crl --evaluations 2048 --out $R/vgg11_params_2048.jsonl
