//! A problem in a file dnslb reads (a zone file, the policy file), with
//! where it is: the file, the line, and for the policy file the entry and
//! the branch path inside it. Printed as `file:line: entry: path: problem`.

use std::{fmt, path::PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    pub file: PathBuf,
    /// The line the offending entry starts on, when there is one.
    pub line: Option<usize>,
    /// The entry the problem is in (``service `www` ``), if any.
    pub entry: Option<String>,
    /// The branch path inside the entry (`policy`, `primary`, `eu`).
    pub path: Vec<String>,
    pub problem: String,
}

impl FileError {
    /// A problem in `file` at no particular place.
    pub fn new(file: impl Into<PathBuf>, problem: impl ToString) -> FileError {
        FileError {
            file: file.into(),
            line: None,
            entry: None,
            path: Vec::new(),
            problem: problem.to_string(),
        }
    }

    pub fn at_line(mut self, line: Option<usize>) -> FileError {
        self.line = line;
        self
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(entry) = &self.entry {
            write!(f, ": {entry}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path.join("/"))?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Every problem found in the files of one load; never empty. Printed a
/// problem a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileErrors(Vec<FileError>);

impl FileErrors {
    /// `problems`, or `None` when there are none.
    pub fn of(problems: Vec<FileError>) -> Option<FileErrors> {
        (!problems.is_empty()).then_some(FileErrors(problems))
    }

    /// `Ok(())` when `problems` is empty.
    pub fn check(problems: Vec<FileError>) -> Result<(), FileErrors> {
        FileErrors::of(problems).map_or(Ok(()), Err)
    }
}

impl From<FileError> for FileErrors {
    fn from(error: FileError) -> FileErrors {
        FileErrors(vec![error])
    }
}

impl IntoIterator for FileErrors {
    type Item = FileError;
    type IntoIter = std::vec::IntoIter<FileError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_in_its_place() {
        let mut error = FileError::new("dnslb.toml", "no pool named `nope`").at_line(Some(7));
        error.entry = Some("service `www`".into());
        error.path = vec!["policy".into(), "primary".into(), "eu".into()];
        assert_eq!(
            error.to_string(),
            "dnslb.toml:7: service `www`: policy/primary/eu: no pool named `nope`"
        );
        assert_eq!(
            FileError::new("a.zone", "cannot read").to_string(),
            "a.zone: cannot read"
        );
    }
}
