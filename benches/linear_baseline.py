"""The text-only linear reference lakecat's model must beat (issue 17), on exactly a bundle's split.

TF-IDF (sublinear tf) over words and word pairs plus character 3-5-grams within word boundaries,
then a linear SVM whose C is chosen by 3-fold cross-validation on the training split alone. The
train/validation split is the bundle's: BLAKE3(salt || product id) below the validation fraction,
read from the bundle's manifest (lakecat_core::split::Split). Labels are pruned with the bundle's
`min_count` the way `lakecat train` prunes them (lakecat_core::prune, merge into the parent,
"Other <name>" leaves, small top levels dropped), so both models learn the same classes and are
scored on the same validation rows against the same (pruned) truth.

    python3 benches/linear_baseline.py fashion  DATA/fashion/products.csv  BUNDLE/manifest.json
    python3 benches/linear_baseline.py flipkart DATA/flipkart/products.csv BUNDLE/manifest.json

Prints one JSON line: top-1 at every level, the chosen C, seconds to tune and fit.
A manifest of "-" uses the default split (fraction 0.2, salt lakecat-split-v1).
"""

import csv
import json
from collections import Counter
import sys
import time

from blake3 import blake3
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.svm import LinearSVC

DATASETS = {
    # id column, text of a row, category path of a row
    "fashion": (
        "id",
        lambda row: row["productDisplayName"],
        lambda row: [row["masterCategory"], row["subCategory"], row["articleType"]],
    ),
    # `lakecat import --category-tree category_tree --max-depth 2`, title + description.
    "flipkart": (
        "uniq_id",
        lambda row: f'{row["product_name"]} {row["description"]}',
        lambda row: [part.strip() for part in row["category_tree"].split(">>")][:2],
    ),
}


def pruned_paths(paths, min_count):
    """Each path's class after lakecat's pruning (core/src/prune.rs), or None when dropped."""
    nodes = {path[:depth] for path in paths for depth in range(1, len(path) + 1)}
    own = Counter(paths)
    children = Counter(node[:-1] for node in nodes if len(node) > 1)
    action, other_leaf, spilled = {}, {}, {}
    # Deepest first, so a parent is judged after its children have been merged into it.
    for node in sorted(nodes, key=len, reverse=True):
        rows_here, parent = own[node], node[:-1] or None
        if children[node] > 0:
            if rows_here >= min_count and rows_here > 0:
                other_leaf[node] = node + (f"Other {node[-1]}",)
            elif rows_here > 0:
                if parent:
                    own[parent] += rows_here
                spilled[node] = parent
            own[node] = 0
            continue
        if rows_here >= min_count:
            continue
        if parent:
            own[parent] += rows_here
            children[parent] -= 1
        action[node] = parent or "dropped"
        own[node] = 0

    def resolve(node):
        while True:
            if action.get(node) == "dropped":
                return None
            if node in action:
                node = action[node]
            elif node in other_leaf:
                return other_leaf[node]
            elif node in spilled:
                if spilled[node] is None:
                    return None
                node = spilled[node]
            else:
                return node

    return {path: resolve(path) for path in set(paths)}


# lakecat_core::split::Split's default.
DEFAULT_SPLIT = {"validation_fraction": 0.2, "salt": "lakecat-split-v1"}


def text_features():
    """TF-IDF (sublinear tf) of words and pairs, and of character 3-5-grams within word boundaries."""
    return FeatureUnion(
        [
            ("words", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)),
            ("chars", TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5), min_df=1)),
        ]
    )


def split_and_min_count(manifest_path):
    if manifest_path == "-":
        return DEFAULT_SPLIT, 1
    recorded = json.load(open(manifest_path))["hyperparameters"]
    if "data" in recorded:
        return recorded["data"]["split"], recorded["data"]["min_count"]
    return recorded["split"], recorded.get("min_count", 1)


def validation_test(split):
    """Whether a product id is in the validation split (lakecat_core::split::Split)."""

    def is_validation(product_id):
        head = int.from_bytes(blake3((split["salt"] + product_id).encode()).digest()[:8], "big")
        return head < split["validation_fraction"] * 2**64

    return is_validation


def main(dataset, products, manifest_path):
    id_column, text_of, path_of = DATASETS[dataset]
    split, min_count = split_and_min_count(manifest_path)
    is_validation = validation_test(split)

    rows = [row for row in csv.DictReader(open(products, encoding="utf-8")) if row[id_column] and path_of(row)[0]]
    classes = pruned_paths([tuple(path_of(row)) for row in rows], min_count)
    dropped = sum(1 for row in rows if classes[tuple(path_of(row))] is None)
    rows = [row for row in rows if classes[tuple(path_of(row))] is not None]
    truth = lambda row: list(classes[tuple(path_of(row))])
    train = [row for row in rows if not is_validation(row[id_column])]
    test = [row for row in rows if is_validation(row[id_column])]
    label = lambda row: " > ".join(truth(row))
    search = GridSearchCV(
        make_pipeline(text_features(), LinearSVC()),
        {"linearsvc__C": [0.1, 0.3, 1.0, 3.0, 10.0]},
        cv=KFold(3, shuffle=True, random_state=0),
        n_jobs=1,
    )
    started = time.time()
    search.fit([text_of(row) for row in train], [label(row) for row in train])
    seconds = time.time() - started
    predicted = search.predict([text_of(row) for row in test])
    depth = max(len(truth(row)) for row in rows)
    per_level = []
    for level in range(1, depth + 1):
        right = sum(p.split(" > ")[:level] == truth(row)[:level] for p, row in zip(predicted, test))
        per_level.append(round(right / len(test), 4))
    leaf = sum(p == label(row) for p, row in zip(predicted, test)) / len(test)
    print(
        json.dumps(
            {
                "model": "linear text baseline: TF-IDF words+pairs+char 3-5-grams, LinearSVC",
                "dataset": dataset,
                "products": products,
                "top1": round(leaf, 4),
                "per_level": per_level,
                "C": search.best_params_["linearsvc__C"],
                "cv_top1": round(search.best_score_, 4),
                "min_count": min_count,
                "classes": len({label(row) for row in train}),
                "rows_dropped_by_pruning": dropped,
                "train_rows": len(train),
                "validation_rows": len(test),
                "seconds": round(seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
