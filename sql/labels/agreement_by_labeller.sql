-- How often each labeller agrees with the consensus (products without consensus apart).
SELECT b.labeller_id,
       count(*) AS labels,
       sum(CASE WHEN d.category IS NOT NULL AND b.category = d.category THEN 1 ELSE 0 END) AS agreed,
       sum(CASE WHEN d.category IS NOT NULL AND (b.category IS NULL OR b.category <> d.category) THEN 1 ELSE 0 END) AS disagreed,
       sum(CASE WHEN d.category IS NULL THEN 1 ELSE 0 END) AS on_products_without_consensus
FROM ballots AS b
JOIN decisions AS d ON d.product_id = b.product_id
GROUP BY b.labeller_id
ORDER BY b.labeller_id
