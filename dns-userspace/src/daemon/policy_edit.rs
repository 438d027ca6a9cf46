//! Editing the policy file through the control API: the text checked as
//! `dnslb check` would (and against the zones being served), its diff
//! against the file being served, and applying it all or nothing: the file
//! is replaced only once the new text has passed every check, and the
//! change is applied only once the file is written.

use similar::{ChangeTag, TextDiff};

use super::live::{ChangeError, Live};
use crate::{
    api::{
        Answer, Refusal, RefusalKind,
        types::{Applied, DiffLine, LineChange, PolicyCheck, PolicyFile, Problem},
    },
    config::secrets::{hide_secrets, restore_secrets},
};

fn no_policy_file() -> Refusal {
    Refusal::new(
        RefusalKind::NotFound,
        "dnslb runs without a policy file (--config): there is none to edit",
    )
}

/// The policy `text` of `file` with its secrets hidden, as the API shows it.
fn hidden(file: &std::path::Path, text: &str) -> Answer<String> {
    hide_secrets(text).map_err(|error| {
        Refusal::new(
            RefusalKind::Failed,
            format!("{}: {error}: fix it there", file.display()),
        )
    })
}

impl Live {
    /// `GET /v1/policy`: the policy file, its secrets hidden.
    pub fn policy_file(&self) -> Answer<PolicyFile> {
        let (file, text) = self.read_policy_file()?;
        let text = hidden(&file, &text)?;
        Ok(PolicyFile { file, text })
    }

    /// The policy file as it is, secrets and all.
    fn read_policy_file(&self) -> Answer<(std::path::PathBuf, String)> {
        let file = self.args().config.clone().ok_or_else(no_policy_file)?;
        let text = std::fs::read_to_string(&file).map_err(|error| {
            Refusal::new(
                RefusalKind::Failed,
                format!("reading {}: {error}", file.display()),
            )
        })?;
        Ok((file, text))
    }

    /// `POST /v1/policy/check`: `text` as sent (secrets hidden) is checked
    /// with the secrets it keeps put back, and diffed as sent.
    pub fn check_policy(&self, text: &str) -> Answer<PolicyCheck> {
        let (file, current) = self.read_policy_file()?;
        let shown = hidden(&file, &current)?;
        let problems = match restore_secrets(text, &current) {
            Ok(full) => match self.check_policy_text(&full) {
                Ok(_) => Vec::new(),
                Err(error) => self.problems(error),
            },
            Err(error) => vec![Problem {
                line: None,
                message: error.to_string(),
            }],
        };
        let diff = TextDiff::from_lines(&shown, text)
            .iter_all_changes()
            .map(|change| DiffLine {
                change: match change.tag() {
                    ChangeTag::Equal => LineChange::Same,
                    ChangeTag::Insert => LineChange::Added,
                    ChangeTag::Delete => LineChange::Removed,
                },
                text: change.value().trim_end_matches('\n').to_owned(),
            })
            .collect();
        Ok(PolicyCheck { problems, diff })
    }

    /// `PUT /v1/policy`: checks `text` as a reload would, writes it over the
    /// policy file, and applies it; refused whole if any of that fails.
    pub fn apply_policy(&self, text: &str) -> Answer<Applied> {
        let (file, current) = self.read_policy_file()?;
        let text = &restore_secrets(text, &current)
            .map_err(|error| Refusal::new(RefusalKind::Invalid, error))?;
        if let Some(fleet) = &self.fleet {
            // Checked here as a reload would; each node applies it as it
            // comes from the fleet.
            self.check_policy_text(text)?;
            let result = fleet.put_policy(text).and_then(|()| self.serving_now());
            return Ok(self.counted("editing the fleet's policy file", result)?);
        }
        let result = self.replace_policy(&file, text);
        Ok(self.counted("editing the policy file", result)?)
    }

    /// Problems as the editor shows them: each on its line when it is in
    /// the policy text (a problem in a zone file names that file and line).
    fn problems(&self, error: ChangeError) -> Vec<Problem> {
        let policy = self.args().config.as_ref();
        match error {
            ChangeError::File(errors) => errors
                .into_iter()
                .map(|error| Problem {
                    line: error.line.filter(|_| Some(&error.file) == policy),
                    message: error.to_string(),
                })
                .collect(),
            other => vec![Problem {
                line: None,
                message: other.to_string(),
            }],
        }
    }
}
