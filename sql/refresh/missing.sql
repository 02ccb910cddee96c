-- Predictions of products that are no longer in the products table (deleted with
-- `lakecat refresh --delete-missing`).
SELECT count(*) AS missing
FROM target AS t
WHERE NOT EXISTS (SELECT 1 FROM source AS s WHERE s.product_id = t.product_id)
