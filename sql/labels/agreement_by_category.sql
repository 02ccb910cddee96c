-- Per category: labels given, products it won, and the mean share of the votes it got on them.
SELECT g.category,
       g.labels,
       coalesce(w.products, 0) AS consensus_products,
       w.mean_vote_share
FROM (SELECT category, count(*) AS labels FROM ballots WHERE category IS NOT NULL GROUP BY category) AS g
LEFT JOIN (
  SELECT category, count(*) AS products, round(avg(CAST(votes AS DOUBLE) / labellers), 3) AS mean_vote_share
  FROM decisions
  WHERE category IS NOT NULL
  GROUP BY category
) AS w ON w.category = g.category
ORDER BY g.category
