"""Can images add to the text on Flipkart at all? An upper bound with scikit-learn (issue 17).

On the bundle's default split (lakecat_core::split, pruned with min count 5 as
`lakecat train --min-count 5` prunes), fits a linear SVM on the frozen backbone's cached image
features (the `--feature-cache` Delta table `lakecat train` filled) and the linear text
baseline (benches/linear_baseline.py's features, C 10), then scores the validation rows with
`text + w * image` for several w. Choosing w on the validation rows themselves is an oracle:
if no w beats w = 0 there, no weight chosen on training rows will.

    python3 benches/image_weight_oracle.py DATA/flipkart/products.csv FEATURE_CACHE_DIR

Prints one JSON line: image-only top-1 and top-1 per weight.
"""

import csv
import glob
import json
import sys

import numpy as np
import pyarrow.parquet as pq
from blake3 import blake3
from sklearn.svm import LinearSVC

from linear_baseline import DATASETS, DEFAULT_SPLIT, pruned_paths, text_features, validation_test


def main(products, feature_cache):
    features = {}
    for part in glob.glob(f"{feature_cache}/*.parquet"):
        for row in pq.read_table(part, columns=["image_blake3", "features"]).to_pylist():
            features[row["image_blake3"]] = np.asarray(row["features"], dtype=np.float32)
    id_column, text_of, path_of = DATASETS["flipkart"]
    is_validation = validation_test(DEFAULT_SPLIT)
    rows = [row for row in csv.DictReader(open(products, encoding="utf-8")) if row[id_column] and path_of(row)[0]]
    classes = pruned_paths([tuple(path_of(row)) for row in rows], 5)
    images, texts, labels, validation = [], [], [], []
    for row in rows:
        leaf = classes[tuple(path_of(row))]
        image = f"{products.rsplit('/', 1)[0]}/images/{row['image']}"
        try:
            digest = blake3(open(image, "rb").read()).hexdigest()
        except OSError:
            continue
        if leaf is None or digest not in features:
            continue
        images.append(features[digest])
        texts.append(text_of(row))
        labels.append(" > ".join(leaf))
        validation.append(is_validation(row[id_column]))
    images, texts = np.asarray(images), np.asarray(texts)
    labels, validation = np.asarray(labels), np.asarray(validation)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    train = ~validation
    features = text_features()
    text_svm = LinearSVC(C=10).fit(features.fit_transform(texts[train]), labels[train])
    image_svm = LinearSVC(C=1, max_iter=20000).fit(images[train], labels[train])
    text_scores = text_svm.decision_function(features.transform(texts[validation]))
    image_scores = image_svm.decision_function(images[validation])
    truth = labels[validation]
    top1 = lambda scores: float((text_svm.classes_[np.argmax(scores, axis=1)] == truth).mean())
    print(
        json.dumps(
            {
                "validation_rows": int(validation.sum()),
                "image_only_top1": float((image_svm.predict(images[validation]) == truth).mean()),
                "top1_by_image_weight": {w: top1(text_scores + w * image_scores) for w in [0, 0.05, 0.1, 0.2, 0.5, 1.0]},
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
