//! The taxonomy versions a session knows (from a `lakecat taxonomy` store) and the migration
//! rules between them, for `taxonomy_migrate` and `taxonomy_id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lakecat_core::{Migration, Taxonomy};

use crate::error::{Error, Result};

/// Rules from one version to another: (old path, new path) pairs.
pub type Rules = Vec<(Vec<String>, Vec<String>)>;

#[derive(Debug, Default)]
pub struct TaxonomyVersions {
    versions: HashMap<String, Taxonomy>,
    rules: HashMap<(String, String), Rules>,
    /// Migrations built on first use.
    migrations: Mutex<HashMap<(String, String), Arc<Migration>>>,
}

impl TaxonomyVersions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_version(mut self, taxonomy: Taxonomy) -> Self {
        self.versions.insert(taxonomy.version().to_string(), taxonomy);
        self
    }

    /// Rules for migrating `from` → `to`; without any, categories map by identical path.
    pub fn with_rules(mut self, from: impl Into<String>, to: impl Into<String>, rules: Rules) -> Self {
        self.rules.insert((from.into(), to.into()), rules);
        self
    }

    pub fn get(&self, version: &str) -> Result<&Taxonomy> {
        self.versions.get(version).ok_or_else(|| {
            let mut known: Vec<&str> = self.versions.keys().map(String::as_str).collect();
            known.sort_unstable();
            Error::UnknownTaxonomy { version: version.to_string(), known: known.join(", ") }
        })
    }

    /// The migration `from` → `to`, built once.
    pub fn migration(&self, from: &str, to: &str) -> Result<Arc<Migration>> {
        let key = (from.to_string(), to.to_string());
        let mut migrations = self.migrations.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(migration) = migrations.get(&key) {
            return Ok(migration.clone());
        }
        let rules = self.rules.get(&key).map(Vec::as_slice).unwrap_or_default();
        let migration = Arc::new(Migration::new(self.get(from)?, self.get(to)?, rules)?);
        migrations.insert(key, migration.clone());
        Ok(migration)
    }
}
