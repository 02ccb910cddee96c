"""Removes the words of every category name from the validation rows' text (issue 17, item 5).

Many catalogs' titles do not name the category ("Aurora midi, sage"); on the public data they
usually do ("Nike Men Blue Casual Shoes"), which makes a text model look strong. This writes a
copy of a products CSV in which, for the rows of the bundle's validation split, every word of
every category name at any level the bundle classifies ("Footwear", "Shoes", "Casual Shoes" →
footwear, shoes, casual) is removed from the title and description. A word matches
case-insensitively, singular or plural ("Tshirt" and "Tshirts" both go), and so do two adjacent
words that spell one ("T-shirt", "Hand Bag" for "Tshirts", "Handbags"). Training rows are
unchanged, so `lakecat eval` of an existing bundle on the copy (and the linear baseline trained
on it) score the same validation rows without the category's own words.

    python3 benches/category_words.py fashion  DATA/fashion/products.csv  BUNDLE  OUT.csv
    python3 benches/category_words.py flipkart DATA/flipkart/products.csv BUNDLE  OUT.csv

Prints one JSON line: the number of category words, of rows changed and of words removed.
"""

import csv
import json
import os
import re
import sys

from linear_baseline import DATASETS, split_and_min_count, validation_test

# The columns holding each dataset's text (those DATASETS' text functions read).
TEXT_COLUMNS = {"fashion": ["productDisplayName"], "flipkart": ["product_name", "description"]}
WORD = re.compile(r"[^\W_]+")


def normal(word):
    """Lower case, a plural `s` dropped: the form two words are compared in."""
    word = word.lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def main(dataset, products, bundle, output):
    id_column = DATASETS[dataset][0]
    split, _ = split_and_min_count(os.path.join(bundle, "manifest.json"))
    is_validation = validation_test(split)
    names = [node["name"] for node in json.load(open(os.path.join(bundle, "taxonomy.json")))["nodes"]]
    category_words = {normal(word) for name in names for word in WORD.findall(name)}
    removed, changed = 0, 0

    def strip(text):
        nonlocal removed
        words = list(WORD.finditer(text))
        gone = [normal(word.group(0)) in category_words for word in words]
        for i in range(len(words) - 1):
            if normal(words[i].group(0) + words[i + 1].group(0)) in category_words:
                gone[i] = gone[i + 1] = True
        removed += sum(gone)
        kept, end = [], 0
        for word, drop in zip(words, gone):
            if drop:
                kept.append(text[end : word.start()])
                end = word.end()
        kept.append(text[end:])
        return " ".join("".join(kept).split())

    with open(products, encoding="utf-8", newline="") as source:
        reader = csv.DictReader(source)
        rows = list(reader)
        columns = reader.fieldnames
    for row in rows:
        if row[id_column] and is_validation(row[id_column]):
            before = [row[column] for column in TEXT_COLUMNS[dataset]]
            for column in TEXT_COLUMNS[dataset]:
                row[column] = strip(row[column])
            changed += before != [row[column] for column in TEXT_COLUMNS[dataset]]
    with open(output, "w", encoding="utf-8", newline="") as sink:
        writer = csv.DictWriter(sink, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(json.dumps({"dataset": dataset, "category_words": len(category_words), "rows_changed": changed,
                      "words_removed": removed}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
