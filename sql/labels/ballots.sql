-- One ballot per labeller and product: the labeller's latest label (by labelled_at when the
-- labels have times). `votes` is the labels table with `known` = the category is in the
-- taxonomy the labels are checked against (always true without one).
SELECT product_id, labeller_id, category, known
FROM (
  SELECT product_id, labeller_id, category, known,
         row_number() OVER (PARTITION BY product_id, labeller_id ORDER BY labelled_at DESC NULLS LAST) AS nth
  FROM votes
)
WHERE nth = 1
