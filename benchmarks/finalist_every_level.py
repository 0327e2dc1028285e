"""What a structured finalist at every level would have given: existing rows only (session 24, R3).

For each (config, seed, level) where the product (random search, 512 candidates, two-stage score, final
fine-tune) and a structured candidate's run (global, uniform) were both measured on the same pinned base,
"with X" exports X's final where its validation accuracy is strictly above the product's, else the
product's. At a level weak in the product row the change counts 0 (the product has finalised its
structured candidates there since sessions 22-23). Prints the change in final test accuracy (points):
mean [95 % t-interval] over all pairs, per model and per level, and how often X was chosen.

    python benchmarks/finalist_every_level.py
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from scipy import stats

ROWS = Path(__file__).parent / "results" / "search"
PRODUCT = {
    "small_cnn_digits": ["small_cnn_digits_s17", "small_cnn_digits_s18", "small_cnn_digits_s18b"],
    "user_cnn_mnist": ["random_user_cnn_mnist_s22"],
    "resnet20_mnist": ["random_resnet20_mnist_s22"],
    "vgg11_mnist": ["random_vgg11_mnist_s22"],
}
ARMS = {"global": "global_{}_s23", "uniform": "uniform_{}_s22"}


def read(name: str, agent: str) -> dict[tuple[int, str], dict]:
    rows = {}
    for line in (ROWS / f"{name}.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["agent"] == agent and r.get("final_test") is not None:
            rows[(int(r["seed"]), r["level"])] = r
    return rows


def interval(xs: list[float]) -> str:
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return f"{mean:+.2f} (n=1)"
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] (n={n})"


def main() -> None:
    changes: dict[str, dict[tuple[str, str], list[float]]] = {a: defaultdict(list) for a in (*ARMS, "both")}
    chosen: dict[str, int] = defaultdict(int)
    pairs = 0
    for config, files in PRODUCT.items():
        product: dict[tuple[int, str], dict] = {}
        for f in files:
            product.update(read(f, "random"))
        arms = {a: read(pattern.format(config), a) for a, pattern in ARMS.items()}
        for key, p in sorted(product.items()):
            if any(key not in arms[a] for a in arms):
                continue
            pairs += 1
            seed, level = key
            options = {"global": arms["global"][key], "uniform": arms["uniform"][key]}
            for arm in (*ARMS, "both"):
                cands = list(options.items()) if arm == "both" else [(arm, options[arm])]
                best_name, best = "product", p
                for name, r in cands:
                    if r["final_val"] > best["final_val"]:
                        best_name, best = name, r
                if p.get("weak"):
                    delta = 0.0
                else:
                    delta = 100.0 * (best["final_test"] - p["final_test"])
                    chosen[(arm, best_name)] += best_name != "product"
                changes[arm][(config, level)].append(delta)
    print(f"{pairs} pairs (config, seed, level) with the product and both structured arms\n")
    for arm, by in changes.items():
        every = [d for ds in by.values() for d in ds]
        print(f"== with {arm}: all pairs {interval(every)}; chosen over the product: "
              + ", ".join(f"{n} {c}x" for (a, n), c in chosen.items() if a == arm and c))
        for config in PRODUCT:
            per = [d for (c, _), ds in by.items() if c == config for d in ds]
            print(f"   {config:18s} {interval(per)}")
            for (c, level), ds in sorted(by.items()):
                if c == config:
                    print(f"      {level:12s} {interval(ds)}")


if __name__ == "__main__":
    main()
