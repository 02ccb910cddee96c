//! Hyperparameter search: a grid or seeded random sample of settings, trained one after
//! another within a budget of trials and minutes; every trial's validation metrics in a table,
//! and the best bundle kept (highest validation top-1, then hierarchy win).
//!
//! Trials are judged on the validation split that training also calibrates on: the search
//! picks among a handful of settings, so the optimism this adds is small, but a final number
//! for a report should come from `lakecat eval` on rows no trial has seen.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde::Serialize;

use crate::config::TrainingConfig;
use crate::data::Example;
use crate::trainer::{FusionTrainer, TrainingReport};
use crate::{Error, Result};

/// The values to try for each hyperparameter; an empty list keeps the base setting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SearchSpace {
    pub dropout: Vec<f64>,
    pub batch_size: Vec<usize>,
    pub learning_rate: Vec<f64>,
    pub weight_decay: Vec<f32>,
    /// `None` = no balancing.
    pub max_count: Vec<Option<usize>>,
    /// Multiplies every augmentation strength of the base settings.
    pub augmentation_scale: Vec<f32>,
    /// Last layers of a pretrained backbone that train (each value caches its own features).
    pub trainable_layers: Vec<usize>,
}

impl SearchSpace {
    /// A space around the defaults that is worth searching on most catalogues.
    pub fn default_space() -> Self {
        Self {
            dropout: vec![0.2, 0.3, 0.5],
            batch_size: vec![32, 64],
            learning_rate: vec![3e-4, 1e-3, 3e-3],
            weight_decay: vec![0.0, 1e-4, 1e-3],
            max_count: vec![None],
            augmentation_scale: vec![0.5, 1.0, 1.5],
            trainable_layers: Vec::new(),
        }
    }

    fn dimensions(&self) -> [usize; 7] {
        [
            self.dropout.len(),
            self.batch_size.len(),
            self.learning_rate.len(),
            self.weight_decay.len(),
            self.max_count.len(),
            self.augmentation_scale.len(),
            self.trainable_layers.len(),
        ]
        .map(|n| n.max(1))
    }

    /// Number of distinct combinations.
    pub fn size(&self) -> usize {
        self.dimensions().iter().product()
    }

    /// The configuration of combination `index` (mixed-radix over the dimensions).
    fn combination(&self, base: &TrainingConfig, mut index: usize) -> TrainingConfig {
        let mut pick = |len: usize| {
            let choice = index % len.max(1);
            index /= len.max(1);
            choice
        };
        let mut config = base.clone();
        if let Some(&v) = self.dropout.get(pick(self.dropout.len())) {
            config.model.dropout = v;
        }
        if let Some(&v) = self.batch_size.get(pick(self.batch_size.len())) {
            config.batch_size = v;
        }
        if let Some(&v) = self.learning_rate.get(pick(self.learning_rate.len())) {
            config.optimizer.learning_rate = v;
        }
        if let Some(&v) = self.weight_decay.get(pick(self.weight_decay.len())) {
            config.optimizer.weight_decay = v;
        }
        if let Some(&v) = self.max_count.get(pick(self.max_count.len())) {
            config.data.max_count = v;
        }
        if let Some(&scale) = self.augmentation_scale.get(pick(self.augmentation_scale.len())) {
            let a = &mut config.data.augmentation;
            a.rotation_degrees *= scale;
            a.brightness *= scale;
            a.shear_degrees *= scale;
            a.zoom *= scale;
            a.channel_shift *= scale;
        }
        if let Some(&v) = self.trainable_layers.get(pick(self.trainable_layers.len())) {
            config.model.trainable_layers = v;
        }
        config
    }
}

/// Grid: every combination in order; random: a seeded sample without repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum SearchStrategy {
    Grid,
    Random,
}

/// One trained trial.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub trial: usize,
    pub dropout: f64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f32,
    pub max_count: Option<usize>,
    pub rotation_degrees: f32,
    pub trainable_layers: usize,
    pub validation_top1: f64,
    pub validation_hierarchy_win: f64,
    pub validation_level_1: f64,
    pub seconds: f64,
    /// Why the trial failed (e.g. a diverging learning rate); its metrics are then 0.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SearchReport {
    pub strategy: SearchStrategy,
    pub space_size: usize,
    pub trials: Vec<Trial>,
    /// Index into `trials` of the kept bundle.
    pub best: usize,
    pub best_bundle: PathBuf,
    /// Trials not run because the budget ran out.
    pub not_run: usize,
    /// The kept trial's training report (its bundle is the one at `best_bundle`).
    #[serde(skip)]
    pub best_report: Option<TrainingReport>,
}

impl SearchReport {
    /// The trials as a Markdown table, best first.
    pub fn table(&self) -> String {
        let mut rows: Vec<&Trial> = self.trials.iter().collect();
        rows.sort_by(|a, b| b.validation_top1.total_cmp(&a.validation_top1));
        let mut out = String::from(
            "| trial | dropout | batch | learning rate | weight decay | max count | rotation ° | trainable layers | top-1 | hierarchy win | level 1 | seconds |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for t in rows {
            let max_count = t.max_count.map_or("-".to_string(), |m| m.to_string());
            let top1 = match &t.error {
                Some(error) => format!("failed: {error}"),
                None => format!("{:.4}", t.validation_top1),
            };
            out.push_str(&format!(
                "| {}{} | {} | {} | {:e} | {:e} | {max_count} | {:.1} | {} | {top1} | {:.4} | {:.4} | {:.0} |\n",
                t.trial,
                if t.trial == self.trials[self.best].trial { " (kept)" } else { "" },
                t.dropout,
                t.batch_size,
                t.learning_rate,
                t.weight_decay,
                t.rotation_degrees,
                t.trainable_layers,
                t.validation_hierarchy_win,
                t.validation_level_1,
                t.seconds
            ));
        }
        out
    }
}

/// Runs the search; trial bundles go to `work_dir/trial-N`, the best one is moved to `bundle_dir`.
#[derive(Debug, Clone)]
pub struct HyperparameterSearch {
    space: SearchSpace,
    strategy: SearchStrategy,
    max_trials: usize,
    budget: Option<Duration>,
    seed: u64,
}

impl HyperparameterSearch {
    pub fn new(space: SearchSpace) -> Self {
        Self { space, strategy: SearchStrategy::Random, max_trials: 8, budget: None, seed: 7 }
    }

    pub fn with_strategy(mut self, strategy: SearchStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    pub fn with_max_trials(mut self, trials: usize) -> Self {
        self.max_trials = trials;
        self
    }

    /// No trial starts after this much time has passed.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    fn plan(&self) -> Vec<usize> {
        let all: Vec<usize> = (0..self.space.size()).collect();
        match self.strategy {
            SearchStrategy::Grid => all.into_iter().take(self.max_trials).collect(),
            SearchStrategy::Random => {
                let mut rng = StdRng::seed_from_u64(self.seed);
                all.choose_multiple(&mut rng, self.max_trials.min(all.len())).copied().collect()
            }
        }
    }

    /// Trains each planned trial with `trainer`, whose configuration is the base of every trial.
    pub fn run(
        &self,
        trainer: &FusionTrainer,
        examples: &[Example<'_>],
        work_dir: &Path,
        bundle_dir: &Path,
    ) -> Result<SearchReport> {
        if self.max_trials == 0 {
            return Err(Error::Setting("a search needs at least one trial".into()));
        }
        let plan = self.plan();
        let started = Instant::now();
        let mut trials = Vec::new();
        let mut best: Option<(usize, f64, f64)> = None;
        let mut best_report = None;
        for (number, &combination) in plan.iter().enumerate() {
            if self.budget.is_some_and(|budget| started.elapsed() >= budget) {
                break;
            }
            let config = self.space.combination(trainer.config(), combination);
            let dir = work_dir.join(format!("trial-{}", number + 1));
            let trial_started = Instant::now();
            let outcome = trainer.clone().with_config(config.clone()).fit(examples, &dir);
            let (report, error) = match outcome {
                Ok(report) => (Some(report), None),
                // A setting that diverges is a result of the search, not the end of it.
                Err(error @ Error::NonFiniteLoss { .. }) => (None, Some(error.to_string())),
                Err(other) => return Err(other),
            };
            let metrics = report.as_ref().map(|report| &report.validation);
            let trial = Trial {
                trial: number + 1,
                dropout: config.model.dropout,
                batch_size: config.batch_size,
                learning_rate: config.optimizer.learning_rate,
                weight_decay: config.optimizer.weight_decay,
                max_count: config.data.max_count,
                rotation_degrees: config.data.augmentation.rotation_degrees,
                trainable_layers: config.model.trainable_layers,
                validation_top1: metrics.as_ref().map_or(0.0, |m| m.top1),
                validation_hierarchy_win: metrics.as_ref().map_or(0.0, |m| m.hierarchy_win),
                validation_level_1: metrics.as_ref().and_then(|m| m.per_level.first().copied()).unwrap_or(0.0),
                seconds: trial_started.elapsed().as_secs_f64(),
                error,
            };
            let score = (trial.validation_top1, trial.validation_hierarchy_win);
            if trial.error.is_none() && best.is_none_or(|(_, top1, win)| score > (top1, win)) {
                best = Some((trials.len(), score.0, score.1));
                best_report = report;
            }
            trials.push(trial);
        }
        let Some((best, _, _)) = best else {
            return Err(Error::Setting(format!("none of the {} trials finished training", trials.len())));
        };
        let kept = work_dir.join(format!("trial-{}", trials[best].trial));
        if bundle_dir.exists() {
            std::fs::remove_dir_all(bundle_dir)
                .map_err(|error| Error::Setting(format!("cannot replace {}: {error}", bundle_dir.display())))?;
        }
        std::fs::rename(&kept, bundle_dir).map_err(|error| {
            Error::Setting(format!("cannot move the best bundle to {}: {error}", bundle_dir.display()))
        })?;
        if let Some(report) = &mut best_report {
            report.bundle = lakecat_core::Bundle::load(bundle_dir)?;
        }
        Ok(SearchReport {
            strategy: self.strategy,
            space_size: self.space.size(),
            not_run: plan.len() - trials.len(),
            trials,
            best,
            best_bundle: bundle_dir.to_path_buf(),
            best_report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_cover_the_grid_once() {
        let space =
            SearchSpace { dropout: vec![0.1, 0.2], learning_rate: vec![1e-3, 1e-2, 1e-1], ..SearchSpace::default() };
        assert_eq!(space.size(), 6);
        let base = TrainingConfig::new();
        let mut seen: Vec<(f64, f64)> =
            (0..6).map(|i| space.combination(&base, i)).map(|c| (c.model.dropout, c.optimizer.learning_rate)).collect();
        seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
        seen.dedup();
        assert_eq!(seen.len(), 6);
        let unchanged = space.combination(&base, 0);
        assert_eq!(unchanged.batch_size, base.batch_size, "an empty list keeps the base setting");
    }

    #[test]
    fn random_plans_are_seeded_and_distinct() {
        let search = HyperparameterSearch::new(SearchSpace::default_space()).with_max_trials(5);
        let plan = search.plan();
        assert_eq!(plan, search.plan());
        let mut distinct = plan.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
        let grid = search.clone().with_strategy(SearchStrategy::Grid).plan();
        assert_eq!(grid, vec![0, 1, 2, 3, 4]);
    }
}
