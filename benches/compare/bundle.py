"""What the Python pipelines share: reading a lakecat bundle (model.onnx, image.json,
text.json, taxonomy.json, manifest.json) and turning images, texts and logits into the same
output as `categorize` (leaf id, confidence, every level), as a Python engineer would write it
with Pillow, numpy and one onnxruntime session; the text vector is built from text.json as
lakecat's vectorizer builds it (core/src/text.rs), written out here because no Python library
hashes fastText-style buckets with FNV-1a."""
import argparse
import functools
import io
import json
import os
import re

import numpy as np
import onnxruntime as ort
from PIL import Image

RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "triangle": Image.BILINEAR,
            "catmull_rom": Image.BICUBIC, "bicubic": Image.BICUBIC, "lanczos3": Image.LANCZOS}


def pipeline_args():
    """The arguments every pipeline takes: --table T --bundle B --output O [--batch 64]."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--batch", type=int, default=64)
    return parser.parse_args()


FNV_OFFSET, FNV_PRIME = 0x811C9DC5, 0x01000193


def fnv1a_32(data):
    value = FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return value


class TextVectorizer:
    """A bundle's text.json applied to title + description: words (maximal alphanumeric runs of
    at least min_token_chars, lower-cased), pairs of adjacent words within a field, character
    n-grams of each framed "<word>" or whitespace token (ngram_source), in the vocabulary as
    "#" + n-gram or hashed into buckets after it; multi-hot, counts or sublinear TF-IDF scaled
    to unit length as a whole or words and n-grams apart (row_norm)."""

    def __init__(self, spec):
        self.spec = spec
        self.index = {term: position for position, term in enumerate(spec["vocabulary"])}
        self.word = re.compile(r"(?u)[^\W_]{%d,}" % spec["min_token_chars"])
        self.char_ngrams = spec.get("char_ngrams")
        self.buckets = spec.get("ngram_buckets")
        self.words_from_tokens = spec.get("ngram_source", "words") == "tokens"
        self.dim = len(spec["vocabulary"]) + (self.buckets["count"] if self.buckets else 0)
        self.idf = np.array(spec.get("idf", []), dtype=np.float32)
        # Which input positions hold n-grams: the buckets, or the vocabulary's "#" terms.
        self.is_ngram = np.array([term.startswith("#") for term in spec["vocabulary"]]
                                 + [True] * (self.dim - len(spec["vocabulary"])))
        # A catalogue repeats its words: each one is cut and hashed once.
        self.ngram_positions = functools.lru_cache(maxsize=1 << 16)(self._ngram_positions)

    def _ngram_positions(self, source):
        framed, (low, high) = f"<{source}>", (self.char_ngrams["min"], self.char_ngrams["max"])
        ngrams = [framed[i:i + n] for n in range(low, min(high, len(framed)) + 1) for i in range(len(framed) - n + 1)]
        if self.buckets:
            first, count = len(self.spec["vocabulary"]), self.buckets["count"]
            return tuple(first + fnv1a_32(ngram.encode()) % count for ngram in ngrams)
        return tuple(p for p in (self.index.get("#" + ngram) for ngram in ngrams) if p is not None)

    def positions(self, text):
        """The input position of each term of one field that has one, with repeats."""
        lowered = text.lower() if self.spec["lowercase"] else text
        words = self.word.findall(lowered)
        terms = words + ([f"{a} {b}" for a, b in zip(words, words[1:])] if self.spec["max_ngram"] == 2 else [])
        found = [p for p in (self.index.get(term) for term in terms) if p is not None]
        if self.char_ngrams:
            for source in lowered.split() if self.words_from_tokens else words:
                found.extend(self.ngram_positions(source))
        return found

    def batch(self, titles, descriptions):
        out = np.zeros((len(titles), self.dim), dtype=np.float32)
        encoding = self.spec["encoding"]
        for row, fields in enumerate(zip(titles, descriptions)):
            found = [p for field in fields if field for p in self.positions(field)]
            if not found:
                continue
            positions, counts = np.unique(np.array(found, dtype=np.int64), return_counts=True)
            if encoding == "multi_hot":
                out[row, positions] = 1.0
            elif encoding == "counts":
                out[row, positions] = counts
            else:
                weights = (1.0 + np.log(counts)).astype(np.float32) * self.idf[positions]
                parts = self.is_ngram[positions] if self.spec.get("row_norm", "whole") == "each_part" \
                    else np.zeros(len(positions), dtype=bool)
                for part in (False, True):
                    chosen = parts == part
                    if chosen.any():
                        weights[chosen] /= np.sqrt(np.sum(weights[chosen] ** 2))
                out[row, positions] = weights
        return out


class Bundle:
    def __init__(self, path, threads=None):
        read = lambda name: json.load(open(os.path.join(path, name)))
        self.manifest = read("manifest.json")
        inputs = self.manifest["inputs"]
        self.image_input, self.text_input = inputs.get("image"), inputs.get("text")
        self.image = read("image.json") if self.image_input else None
        self.text = read("text.json") if self.text_input else None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(os.path.join(path, "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.output = self.manifest["output"]
        self.temperature = self.manifest.get("temperature") or 1.0
        self.classes = np.array(self.manifest["classes"], dtype=np.int64)
        nodes = {n["id"]: n for n in read("taxonomy.json")["nodes"]}
        self.depth = 0
        self.paths = {}
        for leaf in self.classes:
            path, node = [], nodes[int(leaf)]
            while node is not None:
                path.append(node["name"])
                node = nodes.get(node["parent"]) if node["parent"] is not None else None
            self.paths[int(leaf)] = path[::-1]
            self.depth = max(self.depth, len(path))
        if self.text:
            self.vectorizer = TextVectorizer(self.text)
        if self.image:
            self.mean = np.array(self.image["mean"], dtype=np.float32)
            self.std = np.array(self.image["std"], dtype=np.float32)
            self.size = (self.image["width"], self.image["height"])
            self.resample = RESAMPLE.get(self.image["resize_filter"], Image.BILINEAR)

    def image_array(self, data):
        """One preprocessed image, CHW float32 (zeros when missing or undecodable, as lakecat)."""
        if data is None:
            return None
        try:
            image = Image.open(io.BytesIO(data))
            image.draft("RGB", self.size)
            image = image.convert("RGB").resize(self.size, self.resample)
        except Exception:
            return None
        return self.normalize(np.asarray(image))

    def normalize(self, hwc_uint8):
        array = hwc_uint8.astype(np.float32) * (1.0 / 255.0)
        return ((array - self.mean) / self.std).transpose(2, 0, 1)

    def image_batch(self, arrays):
        batch = np.zeros((len(arrays), 3, self.size[1], self.size[0]), dtype=np.float32)
        for i, array in enumerate(arrays):
            if array is not None:
                batch[i] = array
        return batch

    def text_batch(self, titles, descriptions):
        return self.vectorizer.batch(titles, descriptions)

    def score(self, images, texts):
        """Logits → calibrated probabilities → (leaf id, confidence, levels) per row."""
        feeds = {}
        if self.image_input:
            feeds[self.image_input] = images
        if self.text_input:
            feeds[self.text_input] = texts
        logits = self.session.run([self.output], feeds)[0] / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        return self.classes[best], probabilities[np.arange(len(best)), best]

    def output_columns(self, product_ids, leaves, confidences):
        columns = {"product_id": list(product_ids), "category_id": [int(x) for x in leaves],
                   "confidence": [float(x) for x in confidences]}
        for level in range(self.depth):
            columns[f"level_{level + 1}"] = [
                (self.paths[int(leaf)][level] if level < len(self.paths[int(leaf)]) else None) for leaf in leaves]
        return columns
