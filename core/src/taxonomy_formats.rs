//! Taxonomy files in the formats users have: Google's product taxonomy (`ID - A > B > C`), one
//! category path per row (`A > B > C` or `A >> B >> C`, as in the fashion and Flipkart data),
//! and the bundle's own JSON. Each reads and writes back.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::taxonomy::{Node, Taxonomy, split_path};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TaxonomyFormat {
    /// Google's product taxonomy: `# Google_Product_Taxonomy_Version: …` then `ID - A > B > C`
    /// per line; ids are kept.
    Google,
    /// One category path per line, root first, `A > B > C` or `A >> B >> C`; ids are given in
    /// sorted path order.
    Paths,
    /// A model bundle's `taxonomy.json`.
    Json,
}

impl FromStr for TaxonomyFormat {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "google" => Ok(Self::Google),
            "paths" => Ok(Self::Paths),
            "json" => Ok(Self::Json),
            other => Err(Error::Taxonomy(format!("unknown taxonomy format {other:?} (google, paths or json)"))),
        }
    }
}

impl fmt::Display for TaxonomyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Google => "google",
            Self::Paths => "paths",
            Self::Json => "json",
        })
    }
}

const GOOGLE_VERSION_HEADER: &str = "# Google_Product_Taxonomy_Version:";

impl TaxonomyFormat {
    /// Reads a taxonomy. `version` names it; Google files carry their own, used when `None`.
    pub fn parse(self, text: &str, version: Option<&str>) -> Result<Taxonomy> {
        let named = |found: Option<&str>| {
            version.or(found).map(str::to_string).ok_or_else(|| {
                Error::Taxonomy(format!("a {self} taxonomy file does not name its version: give one (--name)"))
            })
        };
        match self {
            Self::Google => parse_google(text, named),
            Self::Paths => {
                let paths: Vec<Vec<String>> =
                    text.lines().map(unquote).map(split_path).filter(|path| !path.is_empty()).collect();
                if paths.is_empty() {
                    return Err(Error::Taxonomy("the file lists no category path".into()));
                }
                Taxonomy::from_paths(named(None)?, paths)
            }
            Self::Json => {
                let taxonomy = Taxonomy::from_json(text)
                    .map_err(|error| Error::Taxonomy(format!("not a taxonomy.json file: {error}")))??;
                match version {
                    Some(version) => Taxonomy::new(version, taxonomy.nodes().to_vec()),
                    None => Ok(taxonomy),
                }
            }
        }
    }

    /// Writes a taxonomy in this format (every node, parents before children).
    pub fn render(self, taxonomy: &Taxonomy) -> String {
        let mut nodes: Vec<&Node> = taxonomy.nodes().iter().collect();
        nodes.sort_by_key(|node| taxonomy.path(node.id));
        match self {
            Self::Google => {
                let mut text = format!("{GOOGLE_VERSION_HEADER} {}\n", taxonomy.version());
                for node in nodes {
                    text.push_str(&format!("{} - {}\n", node.id, taxonomy.path(node.id).join(" > ")));
                }
                text
            }
            Self::Paths => nodes
                .into_iter()
                .filter(|node| taxonomy.is_leaf(node.id))
                .map(|node| taxonomy.path(node.id).join(" > ") + "\n")
                .collect(),
            Self::Json => taxonomy.to_json(),
        }
    }
}

/// Category mapping rules, one `OLD PATH => NEW PATH` per line (`#` starts a comment): what
/// `lakecat taxonomy prune --merge` and migration rules files hold.
pub fn parse_rules(text: &str) -> Result<Vec<(Vec<String>, Vec<String>)>> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(number, line)| {
            let (from, into) = line.split_once("=>").ok_or_else(|| {
                Error::Taxonomy(format!("rule line {number}: expected `OLD PATH => NEW PATH`, got {line:?}"))
            })?;
            let (from, into) = (split_path(from), split_path(into));
            if from.is_empty() || into.is_empty() {
                return Err(Error::Taxonomy(format!("rule line {number}: a side is empty: {line:?}")));
            }
            Ok((from, into))
        })
        .collect()
}

/// A CSV cell as a path: surrounding quotes and Flipkart's `["…"]` wrapping removed.
fn unquote(line: &str) -> &str {
    let line = line.trim();
    let line = line.strip_prefix("[\"").and_then(|inner| inner.strip_suffix("\"]")).unwrap_or(line);
    line.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')).unwrap_or(line)
}

fn parse_google(text: &str, named: impl Fn(Option<&str>) -> Result<String>) -> Result<Taxonomy> {
    let mut header_version = None;
    let mut rows = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(index, line)| (index + 1, line.trim())) {
        if let Some(version) = line.strip_prefix(GOOGLE_VERSION_HEADER) {
            header_version = Some(version.trim());
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| Error::Taxonomy(format!("line {number}: {why}: {line:?}"));
        let (id, path) = line.split_once(" - ").ok_or_else(|| bad("expected `ID - Category > Subcategory`"))?;
        let id: u32 = id.trim().parse().map_err(|_| bad("the id is not a positive integer"))?;
        let path = split_path(path);
        if path.is_empty() {
            return Err(bad("no category path"));
        }
        rows.push((number, id, path));
    }
    // Parents before children, whatever the file's order.
    rows.sort_by_key(|(_, _, path)| path.len());
    let mut ids: HashMap<Vec<String>, u32> = HashMap::with_capacity(rows.len());
    let mut nodes = Vec::with_capacity(rows.len());
    for (number, id, path) in rows {
        let parent = match &path[..path.len() - 1] {
            [] => None,
            prefix => Some(*ids.get(prefix).ok_or_else(|| {
                Error::Taxonomy(format!(
                    "line {number}: the parent {:?} of category {id} is not listed",
                    prefix.join(" > ")
                ))
            })?),
        };
        let name = path[path.len() - 1].clone();
        if ids.insert(path, id).is_some() {
            return Err(Error::Taxonomy(format!("line {number}: category path listed twice (id {id})")));
        }
        nodes.push(Node { id, name, parent });
    }
    Taxonomy::new(named(header_version)?, nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOGLE: &str = "# Google_Product_Taxonomy_Version: 2021-09-21\n\
        1 - Animals & Pet Supplies\n\
        3237 - Animals & Pet Supplies > Live Animals\n\
        2 - Animals & Pet Supplies > Pet Supplies\n\
        3 - Animals & Pet Supplies > Pet Supplies > Bird Supplies\n\
        166 - Apparel & Accessories\n";

    #[test]
    fn google_format_keeps_ids_and_round_trips() {
        let taxonomy = TaxonomyFormat::Google.parse(GOOGLE, None).unwrap();
        assert_eq!(taxonomy.version(), "2021-09-21");
        assert_eq!(taxonomy.len(), 5);
        assert_eq!(taxonomy.path(3), ["Animals & Pet Supplies", "Pet Supplies", "Bird Supplies"]);
        assert_eq!(taxonomy.node(3237).unwrap().parent, Some(1));
        let written = TaxonomyFormat::Google.render(&taxonomy);
        assert_eq!(TaxonomyFormat::Google.parse(&written, None).unwrap(), taxonomy);
        // Every format gives back the same tree (paths renumber ids, so compare paths).
        let json = TaxonomyFormat::Json.render(&taxonomy);
        assert_eq!(TaxonomyFormat::Json.parse(&json, None).unwrap(), taxonomy);
        let paths = TaxonomyFormat::Paths.render(&taxonomy);
        let from_paths = TaxonomyFormat::Paths.parse(&paths, Some("2021-09-21")).unwrap();
        let all_paths = |t: &Taxonomy| {
            let mut paths: Vec<String> = t.nodes().iter().map(|node| t.path(node.id).join(" > ")).collect();
            paths.sort();
            paths
        };
        assert_eq!(all_paths(&from_paths), all_paths(&taxonomy));
    }

    #[test]
    fn bad_google_lines_say_where() {
        let missing_parent = TaxonomyFormat::Google.parse("1 - A\n5 - B > C\n", Some("v")).unwrap_err();
        assert!(missing_parent.to_string().contains("line 2: the parent \"B\" of category 5"), "{missing_parent}");
        let no_id = TaxonomyFormat::Google.parse("A > B\n", Some("v")).unwrap_err();
        assert!(no_id.to_string().contains("line 1: expected `ID - Category"), "{no_id}");
        let no_version = TaxonomyFormat::Google.parse("1 - A\n", None).unwrap_err();
        assert!(no_version.to_string().contains("--name"), "{no_version}");
    }

    #[test]
    fn rules_files() {
        let rules = parse_rules("# renames\nApparel > Topwear => Clothing > Tops\n\nA >> B => C # merged\n").unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1], (vec!["A".to_string(), "B".to_string()], vec!["C".to_string()]));
        let bad = parse_rules("A > B\n").unwrap_err();
        assert!(bad.to_string().contains("rule line 1: expected `OLD PATH => NEW PATH`"), "{bad}");
    }

    #[test]
    fn path_rows_accept_both_separators_and_quotes() {
        let text = "\"Apparel > Topwear > Tshirts\"\n[\"Home Furnishing >> Curtains >> Door\"]\nApparel > Topwear > Shirts\n\n";
        let taxonomy = TaxonomyFormat::Paths.parse(text, Some("v1")).unwrap();
        assert_eq!(taxonomy.leaves().len(), 3);
        assert!(taxonomy.find_path(&["Home Furnishing", "Curtains", "Door"]).is_some());
        assert!(TaxonomyFormat::Paths.parse("\n", Some("v1")).is_err());
    }
}
