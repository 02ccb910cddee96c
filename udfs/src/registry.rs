//! The models a session can score with, by name; the first one loaded is the default.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::LakecatOptions;
use crate::engine::Engine;
use crate::{Error, Result};

#[derive(Debug, Default)]
pub struct ModelRegistry {
    default: Option<String>,
    engines: BTreeMap<String, Arc<Engine>>,
    /// Where each model's bundle was loaded from, as the session named it (a cluster's
    /// executors load the same location).
    locations: BTreeMap<String, String>,
    settings: LakecatOptions,
}

impl ModelRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model under `name`, loaded from its bundle directory; the first model added
    /// becomes the default.
    pub fn with_model(self, name: impl Into<String>, engine: Engine) -> Self {
        let location = engine.bundle().dir().display().to_string();
        self.with_model_from(name, engine, location)
    }

    /// Adds a model under `name` whose bundle came from `location` (a path or an object store
    /// URL, as resolved to one version).
    pub fn with_model_from(mut self, name: impl Into<String>, engine: Engine, location: impl Into<String>) -> Self {
        let name = name.into();
        self.default.get_or_insert_with(|| name.clone());
        self.locations.insert(name.clone(), location.into());
        self.engines.insert(name, Arc::new(engine));
        self
    }

    /// Every model as (name, bundle location, engine), the default first.
    pub fn sources(&self) -> Vec<(&str, &str, &Arc<Engine>)> {
        let mut sources: Vec<_> = self
            .engines
            .iter()
            .map(|(name, engine)| {
                (name.as_str(), self.locations.get(name).map(String::as_str).unwrap_or_default(), engine)
            })
            .collect();
        sources.sort_by_key(|(name, _, _)| Some(*name) != self.default.as_deref());
        sources
    }

    /// The settings the functions score with in a session that has none of its own (a host
    /// session reached through DataFusion's FFI); see [`LakecatOptions::resolve`].
    pub fn with_settings(mut self, settings: LakecatOptions) -> Self {
        self.settings = settings;
        self
    }

    pub fn settings(&self) -> &LakecatOptions {
        &self.settings
    }

    /// The model called `name`, or the default for `None`.
    pub fn get(&self, name: Option<&str>) -> Result<&Arc<Engine>> {
        let name = match name {
            Some(name) => name,
            None => self.default.as_deref().ok_or(Error::NoModel)?,
        };
        self.engines.get(name).ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            loaded: self.engines.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.engines.keys().map(String::as_str)
    }
}

/// Shared state as the functions hold it: compared by identity (DataFusion needs its functions
/// to be `Eq + Hash`; two functions are the same when they use the same registry).
#[derive(Debug)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(inner: Arc<T>) -> Self {
        Self(inner)
    }

    pub fn shared(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Eq for Shared<T> {}

impl<T> std::hash::Hash for Shared<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

/// The model registry as the scoring functions hold it.
pub type SharedModels = Shared<ModelRegistry>;
