//! The policy file (`dnslb run --config dnslb.toml`): zones, endpoint
//! pools, health checks and services with their routing policies.
//!
//! Loading is all or nothing: the file is parsed and every reference
//! checked before anything running sees it, and any problem comes back as
//! one error naming the file and line.

mod compile;
pub mod secrets;
mod sources;
mod spec;
mod weighing;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use crate::{
    backends::PoolSource,
    cli::ZoneArg,
    file_error::{FileError, FileErrors},
    health::CheckDef,
    hooks::HookSpec,
    load::Weighing,
    policy::{BranchSlot, Pool, Service},
};

pub use spec::parse_duration;

/// A loaded, checked policy file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub zones: Vec<ZoneArg>,
    pub checks: Vec<CheckDef>,
    pub pools: Vec<Pool>,
    /// The pools whose endpoints come from elsewhere, by name; their
    /// `endpoints` are filled in at run time.
    pub sources: BTreeMap<String, PoolSource>,
    /// How the pools that weigh by load or ramp up new endpoints do so, by
    /// name; the others use their configured weights as they are.
    pub weighing: BTreeMap<String, Weighing>,
    pub services: Vec<Service>,
    pub branches: BranchLabels,
    pub hooks: Vec<HookSpec>,
    pub anycast: Option<crate::anycast::AnycastSpec>,
    pub declared: Declared,
}

/// Where the policy file declares its services: a problem found once the
/// zones are read (a service in no zone) points at that line.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    file: PathBuf,
    services: HashMap<String, usize>,
}

impl Declared {
    /// A problem with the service `label`, on its line.
    pub fn service_problem(&self, label: &str, problem: impl ToString) -> FileError {
        FileError {
            entry: Some(format!("service `{label}`")),
            ..FileError::new(&self.file, problem).at_line(self.services.get(label).copied())
        }
    }
}

/// The `(service, branch)` label of each answer-counting slot. Slots stay
/// with their labels across reloads so that counters keep counting.
#[derive(Clone, Debug, Default)]
pub struct BranchLabels {
    labels: Vec<(String, String)>,
}

impl BranchLabels {
    /// The slot for a label, allocating the next free one for a new label.
    /// Slot 0 is the kernel's "no branch", so slots start at 1.
    pub fn slot(&mut self, service: &str, branch: &str) -> Result<BranchSlot, String> {
        let found = self
            .labels
            .iter()
            .position(|(s, b)| s == service && b == branch);
        let index = match found {
            Some(index) => index,
            None => {
                self.labels.push((service.to_owned(), branch.to_owned()));
                self.labels.len() - 1
            }
        };
        BranchSlot::try_from(index + 1)
            .ok()
            .filter(|&slot| u32::from(slot) < dns_common::BRANCH_SLOTS)
            .ok_or_else(|| "too many policy branches (the kernel counts 16383)".to_owned())
    }

    /// Every slot with its labels.
    pub fn iter(&self) -> impl Iterator<Item = (BranchSlot, &str, &str)> {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, (s, b))| ((i + 1) as BranchSlot, s.as_str(), b.as_str()))
    }
}

/// Every problem in a policy file, each with where it is.
pub type ConfigError = FileErrors;

/// Reads and checks `path`. `previous` keeps branch slots stable across a
/// reload. Relative paths in the file are relative to the file.
pub fn load_config(path: &Path, previous: Option<&BranchLabels>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| FileError::new(path, format!("cannot read: {error}")))?;
    parse_config(path, &text, previous)
}

/// As [`load_config`], for text already read.
pub fn parse_config(
    path: &Path,
    text: &str,
    previous: Option<&BranchLabels>,
) -> Result<Config, ConfigError> {
    let line = |span: Option<std::ops::Range<usize>>| span.map(|span| line_of(text, span.start));
    let spec: spec::FileSpec = toml::from_str(text)
        .map_err(|error| FileError::new(path, error.message()).at_line(line(error.span())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let (mut config, spans) = compile::compile(spec, base, previous.cloned().unwrap_or_default())
        .map_err(|problems| {
        let mut errors: Vec<FileError> = problems
            .into_iter()
            .map(|problem| FileError {
                entry: problem.entry,
                path: problem.path,
                ..FileError::new(path, problem.message).at_line(line(problem.span))
            })
            .collect();
        // In the file's order, as an editor shows them.
        errors.sort_by_key(|error| error.line);
        FileErrors::of(errors)
            .unwrap_or_else(|| FileError::new(path, "the policy file has problems").into())
    })?;
    config.declared = Declared {
        file: path.to_owned(),
        services: spans
            .services
            .iter()
            .map(|(label, span)| (label.clone(), line_of(text, span.start)))
            .collect(),
    };
    Ok(config)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
