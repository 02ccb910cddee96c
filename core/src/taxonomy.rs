//! A category tree: nodes with ids, names and parents. A category is identified by its full path,
//! never by its leaf name alone (the fashion data has `Sandals` under two parents).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One category. `parent` is `None` for a top-level category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: u32,
    pub name: String,
    pub parent: Option<u32>,
}

/// The on-disk form (`taxonomy.json` in a bundle).
#[derive(Serialize, Deserialize)]
struct TaxonomyFile {
    version: String,
    nodes: Vec<Node>,
}

/// A validated category tree: unique ids, existing parents, no cycles, unique names among
/// siblings. Lookups by id are O(1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taxonomy {
    version: String,
    nodes: Vec<Node>,
    index: HashMap<u32, usize>,
    depth: Vec<usize>,
    child_count: Vec<usize>,
}

/// Splits a category path written as `A > B > C` or `A >> B >> C` into its trimmed parts.
/// Empty parts are dropped, so `"A >> "` is just `["A"]`.
pub fn split_path(path: &str) -> Vec<String> {
    let separator = if path.contains(">>") { ">>" } else { ">" };
    path.split(separator).map(str::trim).filter(|part| !part.is_empty()).map(str::to_string).collect()
}

impl Taxonomy {
    /// Validates `nodes` and builds the tree.
    pub fn new(version: impl Into<String>, nodes: Vec<Node>) -> Result<Self> {
        let mut index = HashMap::with_capacity(nodes.len());
        for (position, node) in nodes.iter().enumerate() {
            if node.name.trim().is_empty() {
                return Err(Error::Taxonomy(format!("node {} has an empty name", node.id)));
            }
            if index.insert(node.id, position).is_some() {
                return Err(Error::Taxonomy(format!("node id {} appears twice", node.id)));
            }
        }
        let mut child_count = vec![0; nodes.len()];
        let mut sibling_names = BTreeSet::new();
        for node in &nodes {
            if let Some(parent) = node.parent {
                let Some(&parent_position) = index.get(&parent) else {
                    return Err(Error::Taxonomy(format!(
                        "node {} ({}) names parent {parent}, which is not in the taxonomy",
                        node.id, node.name
                    )));
                };
                child_count[parent_position] += 1;
            }
            if !sibling_names.insert((node.parent, node.name.as_str())) {
                return Err(Error::Taxonomy(format!(
                    "two nodes named {:?} share the parent {:?}",
                    node.name, node.parent
                )));
            }
        }
        let mut depth = vec![0usize; nodes.len()];
        for start in 0..nodes.len() {
            // Walk up until a node of known depth; a walk longer than the node count is a cycle.
            let mut chain = Vec::new();
            let mut current = Some(start);
            while let Some(position) = current {
                if depth[position] != 0 {
                    break;
                }
                if chain.len() > nodes.len() {
                    return Err(Error::Taxonomy(format!("node {} is part of a cycle", nodes[start].id)));
                }
                chain.push(position);
                current = nodes[position].parent.map(|parent| index[&parent]);
            }
            let mut base = current.map_or(0, |position| depth[position]);
            for &position in chain.iter().rev() {
                base += 1;
                depth[position] = base;
            }
        }
        Ok(Self { version: version.into(), nodes, index, depth, child_count })
    }

    /// Builds a taxonomy from category paths (root first), giving ids 1, 2, … in sorted path
    /// order so that the same set of paths always yields the same ids.
    pub fn from_paths<I, P>(version: impl Into<String>, paths: I) -> Result<Self>
    where
        I: IntoIterator<Item = P>,
        P: IntoIterator<Item = String>,
    {
        let mut all_prefixes = BTreeSet::new();
        for path in paths {
            let path: Vec<String> = path.into_iter().collect();
            for end in 1..=path.len() {
                all_prefixes.insert(path[..end].to_vec());
            }
        }
        let mut ids: HashMap<Vec<String>, u32> = HashMap::new();
        let mut nodes = Vec::with_capacity(all_prefixes.len());
        for (position, prefix) in all_prefixes.into_iter().enumerate() {
            let id = position as u32 + 1;
            let parent = (prefix.len() > 1).then(|| ids[&prefix[..prefix.len() - 1]]);
            let name = prefix[prefix.len() - 1].clone();
            ids.insert(prefix, id);
            nodes.push(Node { id, name, parent });
        }
        Self::new(version, nodes)
    }

    pub fn from_json(json: &str) -> serde_json::Result<Result<Self>> {
        let file: TaxonomyFile = serde_json::from_str(json)?;
        Ok(Self::new(file.version, file.nodes))
    }

    pub fn to_json(&self) -> String {
        let file = TaxonomyFile { version: self.version.clone(), nodes: self.nodes.clone() };
        serde_json::to_string_pretty(&file).expect("a taxonomy always serializes")
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.index.contains_key(&id)
    }

    pub fn node(&self, id: u32) -> Option<&Node> {
        self.index.get(&id).map(|&position| &self.nodes[position])
    }

    /// Depth of a node: 1 for a top-level category.
    pub fn depth(&self, id: u32) -> Option<usize> {
        self.index.get(&id).map(|&position| self.depth[position])
    }

    /// The deepest level of the tree (the number of `level_N` columns).
    pub fn max_depth(&self) -> usize {
        self.depth.iter().copied().max().unwrap_or(0)
    }

    pub fn is_leaf(&self, id: u32) -> bool {
        self.index.get(&id).is_some_and(|&position| self.child_count[position] == 0)
    }

    /// Leaf ids in node order.
    pub fn leaves(&self) -> Vec<u32> {
        self.nodes.iter().filter(|node| self.is_leaf(node.id)).map(|node| node.id).collect()
    }

    /// Ids from the top-level category down to `id` itself; empty for an unknown id.
    pub fn lineage(&self, id: u32) -> Vec<u32> {
        let mut lineage = Vec::new();
        let mut current = self.node(id);
        while let Some(node) = current {
            lineage.push(node.id);
            current = node.parent.and_then(|parent| self.node(parent));
        }
        lineage.reverse();
        lineage
    }

    /// Names from the top-level category down to `id`; empty for an unknown id.
    pub fn path(&self, id: u32) -> Vec<&str> {
        self.lineage(id).into_iter().filter_map(|id| self.node(id)).map(|node| node.name.as_str()).collect()
    }

    /// The node at the end of `path` (names, root first), if every step exists.
    pub fn find_path<S: AsRef<str>>(&self, path: &[S]) -> Option<u32> {
        let mut parent = None;
        let mut found = None;
        for name in path {
            let node = self.nodes.iter().find(|node| node.parent == parent && node.name == name.as_ref())?;
            parent = Some(node.id);
            found = Some(node.id);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(rows: &[&str]) -> Vec<Vec<String>> {
        rows.iter().map(|row| split_path(row)).collect()
    }

    #[test]
    fn same_leaf_name_under_two_parents_stays_two_categories() {
        let taxonomy = Taxonomy::from_paths(
            "t",
            paths(&["Footwear > Sandal > Sandals", "Footwear > Flip Flops", "Apparel > Sandals"]),
        )
        .unwrap();
        let a = taxonomy.find_path(&["Footwear", "Sandal", "Sandals"]).unwrap();
        let b = taxonomy.find_path(&["Apparel", "Sandals"]).unwrap();
        assert_ne!(a, b);
        assert_eq!(taxonomy.path(a), ["Footwear", "Sandal", "Sandals"]);
        assert_eq!(taxonomy.depth(a), Some(3));
        assert_eq!(taxonomy.max_depth(), 3);
        assert_eq!(taxonomy.leaves().len(), 3);
        assert!(!taxonomy.is_leaf(taxonomy.find_path(&["Footwear"]).unwrap()));
    }

    #[test]
    fn ids_do_not_depend_on_input_order() {
        let one = Taxonomy::from_paths("t", paths(&["A > B", "C", "A > D"])).unwrap();
        let two = Taxonomy::from_paths("t", paths(&["A > D", "A > B", "C"])).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn split_path_accepts_both_separators() {
        assert_eq!(split_path("Home >> Curtains >> Door "), ["Home", "Curtains", "Door"]);
        assert_eq!(split_path("Apparel > Topwear"), ["Apparel", "Topwear"]);
        assert!(split_path("  ").is_empty());
    }

    #[test]
    fn refuses_broken_trees() {
        let node = |id, name: &str, parent| Node { id, name: name.into(), parent };
        let missing_parent = Taxonomy::new("t", vec![node(1, "a", Some(9))]).unwrap_err();
        assert!(missing_parent.to_string().contains("parent 9"), "{missing_parent}");
        let cycle = Taxonomy::new("t", vec![node(1, "a", Some(2)), node(2, "b", Some(1))]).unwrap_err();
        assert!(cycle.to_string().contains("cycle"), "{cycle}");
        let duplicate = Taxonomy::new("t", vec![node(1, "a", None), node(1, "b", None)]).unwrap_err();
        assert!(duplicate.to_string().contains("twice"), "{duplicate}");
        let twins = Taxonomy::new("t", vec![node(1, "a", None), node(2, "a", None)]).unwrap_err();
        assert!(twins.to_string().contains("share the parent"), "{twins}");
    }

    #[test]
    fn json_round_trip() {
        let taxonomy = Taxonomy::from_paths("2026-11", paths(&["A > B", "A > C"])).unwrap();
        let back = Taxonomy::from_json(&taxonomy.to_json()).unwrap().unwrap();
        assert_eq!(taxonomy, back);
    }
}
