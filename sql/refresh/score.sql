-- Scores the products listed in `changes` (product_id, content_hash, is_new). `changes` is the small
-- side and is written first: the refresh session keeps this join order and builds the hash
-- table from it alone, so only ids and hashes are held while the products, images included,
-- stream past it.
SELECT s.product_id, s.title, s.description,
       categorize(s.image, s.title, s.description) AS prediction,
       c.content_hash, c.is_new
FROM changes AS c
JOIN source AS s ON s.product_id = c.product_id
