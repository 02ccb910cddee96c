-- The consensus of each product's ballots: the category with the most votes when it has at
-- least :min_agree of them and no other category has as many; otherwise the reason there is
-- none. NULL labels are abstentions; labels unknown to the taxonomy do not count as votes.
WITH tally AS (
  SELECT product_id, category, count(*) AS votes
  FROM ballots
  WHERE category IS NOT NULL AND known
  GROUP BY product_id, category
), ranked AS (
  SELECT product_id, category, votes, rank() OVER (PARTITION BY product_id ORDER BY votes DESC) AS place
  FROM tally
), leaders AS (
  SELECT product_id, max(votes) AS votes, array_agg(category ORDER BY category) AS categories
  FROM ranked
  WHERE place = 1
  GROUP BY product_id
), products AS (
  SELECT product_id,
         count(*) AS labellers,
         count(category) AS answered,
         sum(CASE WHEN category IS NOT NULL AND NOT known THEN 1 ELSE 0 END) AS unknown
  FROM ballots
  GROUP BY product_id
)
SELECT p.product_id, p.labellers, p.answered, p.unknown, l.votes, l.categories,
       CASE WHEN l.votes >= :min_agree AND cardinality(l.categories) = 1 THEN l.categories[1] END AS category,
       CASE
         WHEN l.votes >= :min_agree AND cardinality(l.categories) = 1 THEN NULL
         WHEN p.answered = 0 THEN 'no labeller gave a category'
         WHEN l.votes IS NULL THEN concat('every category given is unknown to the taxonomy (', p.unknown, ' labels)')
         WHEN l.votes >= :min_agree THEN concat('tie: ', array_to_string(l.categories, ' | '), ' (', l.votes, ' votes each)')
         ELSE concat('no category has :min_agree of ', p.labellers, ' votes (most: ', l.votes, ' for ',
                     array_to_string(l.categories, ' | '), ')',
                     CASE WHEN p.unknown > 0 THEN concat('; ', p.unknown, ' labels unknown to the taxonomy') ELSE '' END)
       END AS reason
FROM products AS p
LEFT JOIN leaders AS l ON l.product_id = p.product_id
