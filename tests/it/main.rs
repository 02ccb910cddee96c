//! Integration tests across the crates: import → train → score in SQL, the CLI, bad input.
//! One test binary (modules below) keeps linking cheap.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod cluster;
mod flight;
mod import;
mod labels;
mod python;
mod refresh;
mod remote;
mod s3;
mod scoring;
mod security;
mod train;
