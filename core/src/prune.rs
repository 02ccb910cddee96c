//! Pruning a taxonomy to the categories there is enough data to learn: categories with fewer
//! labelled rows than a minimum are merged into their parent (or dropped), after any explicit
//! merge rules; what is left are the trainable leaves. Nothing is lost silently: every original
//! node says where its rows went, and the totals add up.

use std::collections::HashMap;

use crate::taxonomy::{Node, Taxonomy};
use crate::{Error, Result};

/// What happens to a category under the minimum count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmallCategories {
    /// Its rows count for its parent (a top-level category under the minimum is dropped).
    #[default]
    MergeIntoParent,
    /// Its rows are dropped from training.
    Drop,
}

/// Prunes taxonomies; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Pruner {
    min_count: u64,
    small: SmallCategories,
    merges: Vec<(Vec<String>, Vec<String>)>,
}

/// Where an original category's rows went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneAction {
    Kept,
    /// Into this category (followed to the node that survived).
    MergedInto(u32),
    Dropped,
}

/// One original category in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRow {
    pub id: u32,
    pub path: Vec<String>,
    /// Rows in its subtree before pruning.
    pub rows_before: u64,
    /// Rows in its subtree after pruning (0 unless kept).
    pub rows_after: u64,
    pub action: PruneAction,
}

/// The pruned taxonomy, how each original node maps to it, and the report.
#[derive(Debug, Clone)]
pub struct Pruned {
    pub taxonomy: Taxonomy,
    /// Original node → the surviving node its rows now count for (`None`: dropped).
    pub mapping: HashMap<u32, Option<u32>>,
    /// Every original node, in path order.
    pub report: Vec<PruneRow>,
    pub rows: u64,
    pub dropped_rows: u64,
}

impl Pruner {
    pub fn new(min_count: u64) -> Self {
        Self { min_count, ..Self::default() }
    }

    pub fn with_small_categories(mut self, small: SmallCategories) -> Self {
        self.small = small;
        self
    }

    /// Merges the category at `from` (with its subtree) into the one at `into` before pruning by
    /// count, e.g. redundant categories the counts would not catch.
    pub fn with_merge(mut self, from: Vec<String>, into: Vec<String>) -> Self {
        self.merges.push((from, into));
        self
    }

    /// Prunes `taxonomy` given the rows labelled with each category (usually leaves); the result
    /// is named `version`.
    pub fn prune(&self, taxonomy: &Taxonomy, counts: &HashMap<u32, u64>, version: &str) -> Result<Pruned> {
        if let Some(unknown) = counts.keys().find(|id| !taxonomy.contains(**id)) {
            return Err(Error::Taxonomy(format!(
                "rows are labelled with category {unknown}, which is not in the taxonomy"
            )));
        }
        let mut own: HashMap<u32, u64> =
            taxonomy.nodes().iter().map(|node| (node.id, counts.get(&node.id).copied().unwrap_or(0))).collect();
        let mut alive: HashMap<u32, bool> = taxonomy.nodes().iter().map(|node| (node.id, true)).collect();
        let mut action: HashMap<u32, PruneAction> =
            taxonomy.nodes().iter().map(|node| (node.id, PruneAction::Kept)).collect();
        let before = subtree_totals(taxonomy, &own, |_| true);
        let rows: u64 = own.values().sum();
        let mut dropped_rows = 0;

        for (from, into) in &self.merges {
            let find = |path: &Vec<String>| {
                taxonomy
                    .find_path(path)
                    .ok_or_else(|| Error::Taxonomy(format!("merge rule: no category {:?}", path.join(" > "))))
            };
            let (from_id, into_id) = (find(from)?, find(into)?);
            if taxonomy.lineage(into_id).contains(&from_id) {
                return Err(Error::Taxonomy(format!(
                    "merge rule: {:?} cannot be merged into its own subcategory {:?}",
                    from.join(" > "),
                    into.join(" > ")
                )));
            }
            for node in taxonomy.nodes().iter().filter(|node| taxonomy.lineage(node.id).contains(&from_id)) {
                let moved = std::mem::take(own.get_mut(&node.id).expect("every node has a count"));
                *own.get_mut(&into_id).expect("every node has a count") += moved;
                alive.insert(node.id, false);
                action.insert(node.id, PruneAction::MergedInto(into_id));
            }
        }

        // Deepest first, so a parent is judged after its children have been merged into it.
        let mut by_depth: Vec<&Node> = taxonomy.nodes().iter().collect();
        by_depth.sort_by_key(|node| std::cmp::Reverse(taxonomy.depth(node.id).unwrap_or(0)));
        let mut children: HashMap<u32, usize> = HashMap::new();
        for node in taxonomy.nodes().iter().filter(|node| alive[&node.id]) {
            if let Some(parent) = node.parent {
                *children.entry(parent).or_default() += 1;
            }
        }
        // Rows left on an inner node (labelled there, or merged in from small children while
        // other children survive) get a leaf of their own, "Other <name>", when there are
        // enough of them; otherwise they move up again (or are dropped at the top level).
        let mut next_id = taxonomy.nodes().iter().map(|node| node.id).max().unwrap_or(0);
        let mut other_leaf: HashMap<u32, u32> = HashMap::new();
        let mut spilled: HashMap<u32, Option<u32>> = HashMap::new();
        let mut synthetic: Vec<(Node, u64)> = Vec::new();
        for node in by_depth {
            if !alive[&node.id] {
                continue;
            }
            let rows_here = own[&node.id];
            let is_leaf = children.get(&node.id).copied().unwrap_or(0) == 0;
            if !is_leaf {
                if rows_here >= self.min_count && rows_here > 0 {
                    next_id += 1;
                    let name = format!("Other {}", node.name);
                    synthetic.push((Node { id: next_id, name, parent: Some(node.id) }, rows_here));
                    other_leaf.insert(node.id, next_id);
                    own.insert(node.id, 0);
                } else if rows_here > 0 {
                    let parent = node.parent.filter(|_| self.small == SmallCategories::MergeIntoParent);
                    match parent {
                        Some(parent) => *own.get_mut(&parent).expect("parents have counts") += rows_here,
                        None => dropped_rows += rows_here,
                    }
                    spilled.insert(node.id, parent);
                    own.insert(node.id, 0);
                }
                continue;
            }
            if rows_here >= self.min_count {
                continue;
            }
            let merge_parent = match (self.small, node.parent) {
                (SmallCategories::MergeIntoParent, Some(parent)) => Some(parent),
                // An empty category has no rows to drop: it just goes.
                (SmallCategories::Drop, Some(parent)) if rows_here == 0 => Some(parent),
                _ => None,
            };
            match merge_parent {
                Some(parent) => {
                    *own.get_mut(&parent).expect("parents have counts") += rows_here;
                    action.insert(node.id, PruneAction::MergedInto(parent));
                }
                None => {
                    dropped_rows += rows_here;
                    action.insert(node.id, PruneAction::Dropped);
                }
            }
            own.insert(node.id, 0);
            alive.insert(node.id, false);
            if let Some(parent) = node.parent {
                *children.get_mut(&parent).expect("a child was counted") -= 1;
            }
        }

        let mut survivors: Vec<Node> = taxonomy.nodes().iter().filter(|node| alive[&node.id]).cloned().collect();
        survivors.extend(synthetic.iter().map(|(node, _)| node.clone()));
        for (node, rows) in &synthetic {
            own.insert(node.id, *rows);
        }
        let pruned = Taxonomy::new(version, survivors)?;
        // Where the rows labelled with an original node end up: a surviving leaf, or nowhere.
        let resolve = |mut id: u32| loop {
            match action[&id] {
                PruneAction::Dropped => return None,
                PruneAction::MergedInto(next) => id = next,
                PruneAction::Kept => match (other_leaf.get(&id), spilled.get(&id)) {
                    (Some(&leaf), _) => return Some(leaf),
                    (None, Some(&Some(parent))) => id = parent,
                    (None, Some(&None)) => return None,
                    (None, None) => return Some(id),
                },
            }
        };
        let mapping: HashMap<u32, Option<u32>> =
            taxonomy.nodes().iter().map(|node| (node.id, resolve(node.id))).collect();
        let after = subtree_totals(&pruned, &own, |_| true);
        let mut report: Vec<PruneRow> = taxonomy
            .nodes()
            .iter()
            .map(|node| PruneRow {
                id: node.id,
                path: taxonomy.path(node.id).into_iter().map(str::to_string).collect(),
                rows_before: before[&node.id],
                rows_after: if alive[&node.id] { after[&node.id] } else { 0 },
                action: match action[&node.id] {
                    PruneAction::MergedInto(_) => {
                        mapping[&node.id].map_or(PruneAction::Dropped, PruneAction::MergedInto)
                    }
                    other => other,
                },
            })
            .chain(synthetic.iter().map(|(node, rows)| PruneRow {
                id: node.id,
                path: pruned.path(node.id).into_iter().map(str::to_string).collect(),
                rows_before: 0,
                rows_after: *rows,
                action: PruneAction::Kept,
            }))
            .collect();
        report.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Pruned { taxonomy: pruned, mapping, report, rows, dropped_rows })
    }
}

/// Rows in each node's subtree, counting only nodes for which `include` holds.
fn subtree_totals(taxonomy: &Taxonomy, own: &HashMap<u32, u64>, include: impl Fn(u32) -> bool) -> HashMap<u32, u64> {
    let mut totals: HashMap<u32, u64> = taxonomy.nodes().iter().map(|node| (node.id, 0)).collect();
    for node in taxonomy.nodes().iter().filter(|node| include(node.id)) {
        for ancestor in taxonomy.lineage(node.id) {
            *totals.get_mut(&ancestor).expect("lineage ids exist") += own[&node.id];
        }
    }
    totals
}

impl Pruned {
    /// Rows per surviving leaf (the trainable classes), in path order.
    pub fn leaf_rows(&self) -> Vec<(u32, u64)> {
        self.report.iter().filter(|row| self.taxonomy.is_leaf(row.id)).map(|row| (row.id, row.rows_after)).collect()
    }

    /// The pruned tree with row counts before → after, and what was merged or dropped under
    /// each node, indented by depth.
    pub fn tree(&self) -> String {
        let mut text = String::new();
        for row in &self.report {
            let indent = "  ".repeat(row.path.len().saturating_sub(1));
            let name = row.path.last().map(String::as_str).unwrap_or_default();
            let line = match row.action {
                PruneAction::Kept if self.taxonomy.is_leaf(row.id) => {
                    format!("{indent}{name}: {} rows (leaf; {} before)\n", row.rows_after, row.rows_before)
                }
                PruneAction::Kept => format!("{indent}{name}: {} rows ({} before)\n", row.rows_after, row.rows_before),
                PruneAction::MergedInto(into) => format!(
                    "{indent}- {name}: {} rows merged into {}\n",
                    row.rows_before,
                    self.taxonomy.path(into).join(" > ")
                ),
                PruneAction::Dropped => format!("{indent}x {name}: {} rows dropped\n", row.rows_before),
            };
            if row.rows_before > 0 || row.action == PruneAction::Kept {
                text.push_str(&line);
            }
        }
        text.push_str(&format!(
            "{} rows: {} kept in {} trainable leaves, {} dropped\n",
            self.rows,
            self.rows - self.dropped_rows,
            self.taxonomy.leaves().len(),
            self.dropped_rows
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxonomy::split_path;

    fn labelled(rows: &[(&str, u64)]) -> (Taxonomy, HashMap<u32, u64>) {
        let taxonomy = Taxonomy::from_paths("v1", rows.iter().map(|(path, _)| split_path(path))).unwrap();
        let counts = rows.iter().map(|(path, n)| (taxonomy.find_path(&split_path(path)).unwrap(), *n)).collect();
        (taxonomy, counts)
    }

    fn id(taxonomy: &Taxonomy, path: &str) -> u32 {
        taxonomy.find_path(&split_path(path)).unwrap()
    }

    #[test]
    fn small_leaves_merge_upwards_until_big_enough() {
        let (taxonomy, counts) = labelled(&[
            ("Apparel > Topwear > Tshirts", 50),
            ("Apparel > Topwear > Shirts", 8),
            ("Apparel > Topwear > Tops", 7),
            ("Apparel > Socks > Ankle", 3),
            ("Apparel > Socks > Knee", 2),
            ("Toys", 4),
        ]);
        let pruned = Pruner::new(10).prune(&taxonomy, &counts, "v1-pruned").unwrap();
        let leaves: Vec<(String, u64)> =
            pruned.leaf_rows().into_iter().map(|(leaf, rows)| (pruned.taxonomy.path(leaf).join(" > "), rows)).collect();
        // Shirts + Tops (15) go up to Topwear, which keeps Tshirts: they become "Other Topwear".
        // Socks' 5 go up to Apparel, too few for a leaf of their own: up again, and dropped at the
        // top level like Toys.
        assert_eq!(
            leaves,
            [("Apparel > Topwear > Other Topwear".to_string(), 15), ("Apparel > Topwear > Tshirts".to_string(), 50)]
        );
        let other_topwear = pruned.taxonomy.find_path(&split_path("Apparel > Topwear > Other Topwear")).unwrap();
        assert_eq!(pruned.mapping[&id(&taxonomy, "Apparel > Topwear > Shirts")], Some(other_topwear));
        assert_eq!(pruned.mapping[&id(&taxonomy, "Apparel > Socks > Knee")], None);
        assert_eq!(pruned.mapping[&id(&taxonomy, "Toys")], None);
        assert_eq!((pruned.rows, pruned.dropped_rows), (74, 9));
        let apparel = pruned.report.iter().find(|row| row.path == ["Apparel"]).unwrap();
        assert_eq!((apparel.rows_before, apparel.rows_after), (70, 65));
        let tree = pruned.tree();
        assert!(tree.contains("- Shirts: 8 rows merged into Apparel > Topwear > Other Topwear"), "{tree}");
        assert!(tree.contains("74 rows: 65 kept in 2 trainable leaves, 9 dropped"), "{tree}");
    }

    #[test]
    fn drop_mode_and_explicit_merges() {
        let (taxonomy, counts) = labelled(&[("A > B", 30), ("A > C", 5), ("D > E", 12), ("D > F", 12), ("G > H", 25)]);
        let pruned = Pruner::new(10)
            .with_small_categories(SmallCategories::Drop)
            .with_merge(split_path("D > F"), split_path("D > E"))
            .prune(&taxonomy, &counts, "v2")
            .unwrap();
        let leaves: Vec<(String, u64)> =
            pruned.leaf_rows().into_iter().map(|(leaf, rows)| (pruned.taxonomy.path(leaf).join(" > "), rows)).collect();
        assert_eq!(leaves, [("A > B".to_string(), 30), ("D > E".to_string(), 24), ("G > H".to_string(), 25)]);
        assert_eq!(pruned.dropped_rows, 5);
        assert_eq!(pruned.mapping[&id(&taxonomy, "D > F")], Some(id(&taxonomy, "D > E")));
        let cycle = Pruner::new(1).with_merge(split_path("D"), split_path("D > E")).prune(&taxonomy, &counts, "x");
        assert!(cycle.unwrap_err().to_string().contains("its own subcategory"));
        let unknown = Pruner::new(1).with_merge(split_path("Z"), split_path("D")).prune(&taxonomy, &counts, "x");
        assert!(unknown.unwrap_err().to_string().contains("no category \"Z\""));
    }
}
