-- Which products `lakecat refresh` must score: those the predictions table `target` does not
-- hold for their current inputs and model. `source` is the products table (product_id, title,
-- description, image, image_version); $1 is the model's fingerprint, $2 the scoring settings
-- (`scored_with`: top_k, confidence threshold, fetch policy). `image_version` is the
-- object's ETag (or version, or size and time) for images named by URI, NULL for image bytes:
-- a photo replaced under the same URI changes the hash.
-- Rescored: new products, changed inputs (content hash), predictions of another model or other
-- settings, and rows whose image could not be fetched last time (often transient: a timeout, a
-- 503). Rows `refused` by policy are not retried: the same input is refused again.
-- Products without an id cannot be keyed: they are counted and reported instead. `is_new`
-- (not in the table yet) lets the refresh append instead of MERGE.
SELECT s.product_id, s.content_hash, t.product_id IS NULL AS is_new
FROM (SELECT product_id, content_hash(image, title, description, image_version) AS content_hash FROM source) AS s
LEFT JOIN target AS t ON s.product_id = t.product_id
WHERE s.product_id IS NOT NULL
  AND (t.product_id IS NULL
       OR t.content_hash <> s.content_hash
       OR (t.model IS DISTINCT FROM $1)
       OR (t.scored_with IS DISTINCT FROM $2)
       OR t.error_stage = 'fetch')
