"""What the Python pipelines share: reading a lakecat bundle (model.onnx, image.json,
text.json, taxonomy.json, manifest.json) and turning images, texts and logits into the same
output as `categorize` (leaf id, confidence, every level), as a Python engineer would write it
with Pillow, numpy, scikit-learn's CountVectorizer and one onnxruntime session."""
import argparse
import io
import json
import os
import re

import numpy as np
import onnxruntime as ort
from PIL import Image
from sklearn.feature_extraction.text import CountVectorizer

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
            spec = self.text
            # lakecat's terms: words (maximal runs of alphanumeric characters, at least
            # min_token_chars), pairs of adjacent words, then "#" + character n-grams of "<word>".
            word = re.compile(r"(?u)[^\W_]{%d,}" % spec["min_token_chars"])
            ngrams = spec.get("char_ngrams")

            def terms(text):
                words = word.findall(text.lower() if spec["lowercase"] else text)
                out = list(words)
                if spec["max_ngram"] == 2:
                    out += [f"{a} {b}" for a, b in zip(words, words[1:])]
                for w in words if ngrams else ():
                    framed = f"<{w}>"
                    for n in range(ngrams["min"], min(ngrams["max"], len(framed)) + 1):
                        out += ["#" + framed[i:i + n] for i in range(len(framed) - n + 1)]
                return out

            self.vectorizer = CountVectorizer(
                vocabulary={term: i for i, term in enumerate(spec["vocabulary"])},
                analyzer=terms, binary=spec["encoding"] == "multi_hot", dtype=np.float32)
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
        texts = [f"{t or ''} {d or ''}" for t, d in zip(titles, descriptions)]
        return self.vectorizer.transform(texts).toarray()

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
