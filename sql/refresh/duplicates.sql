-- Product ids that appear more than once in the products table: a refresh keyed on product id
-- cannot tell which row is meant, so it stops and lists some.
SELECT product_id, count(*) AS copies
FROM source
WHERE product_id IS NOT NULL
GROUP BY product_id
HAVING count(*) > 1
ORDER BY copies DESC, product_id
LIMIT 5
