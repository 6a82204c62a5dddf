#!/usr/bin/env python3
"""Compare domicile's recommender with the `implicit` library on the same data and split.

    python3 bench/compare_implicit.py                       # a generated world, from the workspace root
  python3 bench/compare_implicit.py --dataset ml-100k     # MovieLens 100k, ratings >= 4 as positives

MovieLens 100k (GroupLens; 100,000 ratings of 1,682 movies by 943 users) is public data. No
network but the package registries is reachable here, so the script takes the copy that the
RecBole wheel on PyPI ships (`recbole/dataset_example/ml-100k/ml-100k.inter`, fetched with
`pip download recbole==1.2.1 --no-deps` into bench/.cache), keeps ratings of 4 and 5 as positives
of weight 1, and splits them like the generated world.

Creates bench/.venv on first use and installs `implicit numpy scipy` from PyPI into it, builds
the release `domicile` binary, generates a seeded world with `domicile recsys generate`, splits
it (seeded, per-pair random hold-out, every user keeps one training pair), then trains on the
same training CSV and the same hyper-parameters:

  domicile: `recsys train` (ALS, item-item cosine, item-item BM25, blend, and the buyer's EASE
            from crates/recommender-ease, `--model ease --set lambda=...`), signed, and
            `recsys recommend --exclude-seen --trusted-key` for the test users, each user folded
            in from their training history (models hold no user; serving time includes fold-in);
  implicit: AlternatingLeastSquares (conjugate gradient), CosineRecommender, BM25Recommender,
            each `fit` then a batch `recommend(..., filter_already_liked_items=True)`.

Both sides optimise the same objective: domicile's confidence is c = 1 + alpha * w, so implicit
is given the matrix 1 + alpha * w with its own alpha left at 1 (implicit uses c = alpha * data).
Fit time is the library's fit alone (domicile prints it; reading the CSV is excluded), serving
time is the batch recommendation of every test user. All metrics are computed here, by one
function, with the formulas of docs/recommender.md.
"""

import argparse
import csv
import zipfile
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venv"


def ensure_venv():
    """Re-run this script inside bench/.venv, creating it and installing implicit if needed."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {VENV} and installing implicit, numpy, scipy from PyPI ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "implicit", "numpy", "scipy"], check=True)
    # One BLAS thread, as implicit recommends; implicit's own num_threads sets its parallelism.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_NUM_THREADS="1")
    os.execve(str(py), [str(py), __file__, *sys.argv[1:]], env)


RECBOLE = "recbole==1.2.1"
ML_100K = "recbole/dataset_example/ml-100k/ml-100k.inter"


def movielens_100k(out):
    """Writes MovieLens 100k's ratings >= 4 as an interactions CSV (user, item, weight 1,
    timestamp in ms) and returns the path."""
    cache = ROOT / "bench" / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        print(f"fetching MovieLens 100k from PyPI ({RECBOLE}, no dependencies) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", RECBOLE, "-d", str(cache)],
                       check=True)
        wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    kept = total = 0
    with zipfile.ZipFile(wheels[0]) as z, z.open(ML_100K) as f, open(out, "w", newline="") as o:
        w = csv.writer(o)
        w.writerow(["user", "item", "weight", "timestamp"])
        lines = (line.decode("utf-8").rstrip("\n").split("\t") for line in f)
        header = next(lines)
        assert header[:4] == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"], header
        for user, item, rating, ts in lines:
            total += 1
            if float(rating) >= 4:
                kept += 1
                w.writerow([f"u{user}", f"m{item}", 1, int(float(ts)) * 1000])
    print(f"MovieLens 100k: {total} ratings, {kept} of them >= 4 kept as positives")
    return out


def run(cmd):
    out = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)
    return out.stdout + out.stderr


def metrics(recommended, relevant, k, n_items):
    """precision, recall, NDCG, MAP at k (macro-averaged over users) and catalogue coverage."""
    import math

    p = r = ndcg = ap_sum = 0.0
    users = 0
    covered = set()
    for user, rel in relevant.items():
        recs = recommended.get(user, [])[:k]
        covered.update(recs)
        hits, dcg, ap = 0, 0.0, 0.0
        for rank, item in enumerate(recs, start=1):
            if item in rel:
                hits += 1
                dcg += 1.0 / math.log2(rank + 1)
                ap += hits / rank
        ideal = min(k, len(rel))
        idcg = sum(1.0 / math.log2(i + 1) for i in range(1, ideal + 1))
        users += 1
        p += hits / k
        r += hits / len(rel)
        ndcg += dcg / idcg
        ap_sum += ap / ideal
    return {
        "precision": p / users,
        "recall": r / users,
        "ndcg": ndcg / users,
        "map": ap_sum / users,
        "coverage": len(covered) / n_items,
        "users": users,
    }


def main():
    ensure_venv()
    import numpy as np
    import scipy.sparse as sp
    import implicit
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["generated", "ml-100k"], default="generated",
                    help="a generated world (default) or MovieLens 100k (public; ratings >= 4)")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--videos", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--regularization", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument("--neighbours", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ease-lambda", type=float, default=200.0,
                    help="EASE's penalty (choose it on a validation split of the training data)")
    ap.add_argument("--ease-items", type=int, default=0,
                    help="EASE models only this many most-watched items (0: every item)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--workdir", default=None, help="keep the data here (default: a temporary directory)")
    ap.add_argument("--no-build", action="store_true", help="use the existing target/release/domicile")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="domicile-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    binary = ROOT / "target" / "release" / "domicile"
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "domicile"], cwd=ROOT, check=True)
    print(f"implicit {implicit.__version__}, numpy {np.__version__}; data in {work}")

    if args.dataset == "ml-100k":
        world = movielens_100k(work / "ml-100k.csv")
    else:
        world = work / "world.csv"
        run([binary, "recsys", "generate", "--users", args.users, "--videos", args.videos,
             "--events", args.events, "--seed", args.seed, "--out", world])

    # Read and split, seeded: each pair is held out with probability `holdout`; a user whose every
    # pair was drawn keeps the first one for training.
    rows_by_user = {}
    with open(world, newline="") as f:
        for row in csv.DictReader(f):
            rows_by_user.setdefault(row["user"], []).append(row)
    rng = random.Random(args.seed)
    train_rows, test = [], {}
    for user, rows in rows_by_user.items():
        held = [rng.random() < args.holdout for _ in rows]
        if all(held):
            held[0] = False
        for row, h in zip(rows, held):
            if h:
                test.setdefault(user, set()).add(row["item"])
            else:
                train_rows.append(row)
    train_csv = work / "train.csv"
    with open(train_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(train_rows[0].keys()))
        w.writeheader()
        w.writerows(train_rows)
    test_users = sorted(test)
    users_file = work / "test_users.txt"
    users_file.write_text("\n".join(test_users) + "\n")
    n_items = len({row["item"] for rows in rows_by_user.values() for row in rows})
    print(f"{len(rows_by_user)} users, {n_items} items, {len(train_rows)} training pairs, "
          f"{sum(len(s) for s in test.values())} held out for {len(test)} users")

    key = work / "model.key"
    if not key.exists():
        run([binary, "recsys", "keygen", "--out", key])
    results = []
    common = ["--signing-key", key, "--factors", args.factors, "--iterations", args.iterations, "--regularization",
              args.regularization, "--alpha", args.alpha, "--cg-steps", args.cg_steps,
              "--neighbours", args.neighbours, "--threads", args.threads]
    for name, extra in [("als", ["--model", "als"]),
                        ("item-knn-cosine", ["--model", "item-knn", "--similarity", "cosine"]),
                        ("item-knn-bm25", ["--model", "item-knn", "--similarity", "bm25"]),
                        ("blend", ["--model", "blend"]),
                        ("ease", ["--model", "ease", "--set", f"lambda={args.ease_lambda}",
                                  "--set", f"threads={args.threads}",
                                  *(["--set", f"top_items={args.ease_items}"] if args.ease_items else [])])]:
        model = work / f"{name}.domrec"
        wall = time.perf_counter()
        out = run([binary, "recsys", "train", "--interactions", train_csv, "--model-out", model, *common, *extra])
        fit = float(re.search(r"fitted \S+ in ([0-9.]+) s", out).group(1))
        recs_csv = work / f"{name}.recs.csv"
        out = run([binary, "recsys", "recommend", "--model", model, "--interactions", train_csv,
                   "--trusted-key", f"{key}.pub", "--users", users_file, "--k", args.k,
                   "--exclude-seen", "--threads", args.threads, "--out", recs_csv])
        serve = float(re.search(r"recommended for \d+ users in ([0-9.]+) s", out).group(1))
        wall = time.perf_counter() - wall
        recs = {}
        with open(recs_csv, newline="") as f:
            for row in csv.DictReader(f):
                recs.setdefault(row["user"], []).append(row["item"])
        results.append((f"domicile {name}", fit, serve, metrics(recs, test, args.k, n_items), wall))
        print(f"domicile {name}: fit {fit:.2f} s, serve {serve:.2f} s, {results[-1][3]}", flush=True)

    # The same training matrix for implicit, with confidence 1 + alpha * w.
    uid = {u: i for i, u in enumerate(rows_by_user)}
    iid = {}
    for rows in rows_by_user.values():
        for row in rows:
            iid.setdefault(row["item"], len(iid))
    items_by_index = [None] * len(iid)
    for item, i in iid.items():
        items_by_index[i] = item
    r = np.array([uid[row["user"]] for row in train_rows], dtype=np.int32)
    c = np.array([iid[row["item"]] for row in train_rows], dtype=np.int32)
    w = np.array([float(row["weight"]) for row in train_rows], dtype=np.float32)
    user_items = sp.csr_matrix((w, (r, c)), shape=(len(uid), len(iid)), dtype=np.float32)
    confidence = user_items.copy()
    confidence.data = 1.0 + args.alpha * confidence.data
    test_idx = np.array([uid[u] for u in test_users], dtype=np.int32)

    models = [
        ("implicit als", AlternatingLeastSquares(
            factors=args.factors, regularization=args.regularization, alpha=1.0,
            iterations=args.iterations, use_cg=True,
            calculate_training_loss=False, num_threads=args.threads, random_state=args.seed), confidence),
        ("implicit cosine", CosineRecommender(K=args.neighbours, num_threads=args.threads), user_items),
        ("implicit bm25", BM25Recommender(K=args.neighbours, num_threads=args.threads), user_items),
    ]
    models[0][1].cg_steps = args.cg_steps  # an attribute, not a constructor argument, in 0.7
    for name, model, matrix in models:
        wall = start = time.perf_counter()
        model.fit(matrix, show_progress=False)
        fit = time.perf_counter() - start
        start = time.perf_counter()
        ids, _scores = model.recommend(test_idx, user_items[test_idx], N=args.k, filter_already_liked_items=True)
        serve = time.perf_counter() - start
        wall = time.perf_counter() - wall
        recs = {test_users[q]: [items_by_index[i] for i in ids[q] if i >= 0] for q in range(len(test_users))}
        results.append((name, fit, serve, metrics(recs, test, args.k, n_items), wall))
        print(f"{name}: fit {fit:.2f} s, serve {serve:.2f} s, {results[-1][3]}", flush=True)

    k = args.k
    print(f"\nfactors {args.factors}, iterations {args.iterations}, regularization {args.regularization}, "
          f"alpha {args.alpha}, cg steps {args.cg_steps}, neighbours {args.neighbours}, threads {args.threads}")
    print(f"{'model':<26}{'fit s':>8}{'serve s':>9}{'wall s':>8}{'prec@'+str(k):>10}{'recall@'+str(k):>11}"
          f"{'ndcg@'+str(k):>9}{'map@'+str(k):>9}{'coverage':>10}")
    for name, fit, serve, m, wall in results:
        print(f"{name:<26}{fit:>8.2f}{serve:>9.2f}{wall:>8.2f}{m['precision']:>10.4f}{m['recall']:>11.4f}"
              f"{m['ndcg']:>9.4f}{m['map']:>9.4f}{m['coverage']:>10.4f}")
    ours = {n: (f, m) for n, f, _, m, _ in results}
    als_ratio = ours["implicit als"][0] / ours["domicile als"][0]
    print(f"\nALS fit: domicile is {als_ratio:.2f}x implicit's speed "
          f"({ours['domicile als'][0]:.2f} s vs {ours['implicit als'][0]:.2f} s)")
    serve = {n: s for n, _, s, _, _ in results}
    print(f"ALS batch recommend ({len(test_users)} users): domicile {serve['domicile als']:.2f} s "
          f"(model loading excluded), implicit {serve['implicit als']:.2f} s")
    best = lambda prefix: max((m["ndcg"], n) for n, _, _, m, _ in results if n.startswith(prefix))
    print("wall s: domicile's is the whole `recsys train` plus `recsys recommend` processes (CSV parsing,\n"
          "signing, writing and reading the model, fold-in); implicit's is its fit plus its recommend, in-process.")
    print(f"best NDCG@{k}: domicile {best('domicile')[1]} {best('domicile')[0]:.4f}, "
          f"implicit {best('implicit')[1]} {best('implicit')[0]:.4f}")


if __name__ == "__main__":
    main()
