//! Secrets of the policy file: each `[tsig_key.NAME]`'s `secret`, written
//! inline or kept in a `secret_file`. The control API and the console never
//! show one: the policy text they give has each inline secret replaced by
//! [`HIDDEN`], and a text sent back with [`HIDDEN`] keeps the secret the
//! file has.

use std::{os::unix::fs::PermissionsExt, path::Path};

use toml_edit::{DocumentMut, Item, Value};

/// What the API and the console show in place of a secret that is set.
pub const HIDDEN: &str = "(set: hidden by dnslb)";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the policy text does not parse: {0}")]
    Parse(#[from] toml_edit::TomlError),
    #[error(
        "tsig_key `{0}`: the secret reads \"{HIDDEN}\", but the policy file has no secret for that key to keep: write the secret, or use secret_file"
    )]
    NothingToKeep(String),
}

/// `text` with every inline TSIG secret replaced by [`HIDDEN`]; layout and
/// comments stay.
pub fn hide_secrets(text: &str) -> Result<String, SecretError> {
    let mut document: DocumentMut = text.parse()?;
    for (_, secret) in secrets(&mut document) {
        replace_keeping_decor(secret, HIDDEN);
    }
    Ok(document.to_string())
}

/// `text` with each secret that reads [`HIDDEN`] replaced by the one the
/// same key has in `current`, the policy file as it is.
pub fn restore_secrets(text: &str, current: &str) -> Result<String, SecretError> {
    let mut document: DocumentMut = text.parse()?;
    if !secrets(&mut document)
        .iter()
        .any(|(_, secret)| secret.as_str() == Some(HIDDEN))
    {
        return Ok(text.to_owned());
    }
    let mut current: DocumentMut = current.parse()?;
    let kept: Vec<(String, String)> = secrets(&mut current)
        .into_iter()
        .filter_map(|(name, secret)| Some((name, secret.as_str()?.to_owned())))
        .collect();
    for (name, secret) in secrets(&mut document) {
        if secret.as_str() != Some(HIDDEN) {
            continue;
        }
        let (_, old) = kept
            .iter()
            .find(|(key, _)| *key == name)
            .ok_or_else(|| SecretError::NothingToKeep(name.clone()))?;
        replace_keeping_decor(secret, old);
    }
    Ok(document.to_string())
}

/// Each TSIG key's inline `secret`, with the key's name.
fn secrets(document: &mut DocumentMut) -> Vec<(String, &mut Value)> {
    let Some(keys) = document
        .get_mut("tsig_key")
        .and_then(Item::as_table_like_mut)
    else {
        return Vec::new();
    };
    keys.iter_mut()
        .filter_map(|(name, key)| {
            let secret = key.as_table_like_mut()?.get_mut("secret")?.as_value_mut()?;
            Some((name.get().to_owned(), secret))
        })
        .collect()
}

fn replace_keeping_decor(value: &mut Value, text: &str) {
    let decor = value.decor().clone();
    *value = Value::from(text);
    *value.decor_mut() = decor;
}

/// The secret in `path`: the file's one line, or the `secret` of a key
/// file as `tsig-keygen` (`secret "...";`) or `keymgr -t` (`secret: ...`)
/// write it. Refused when anyone on the host may read the file.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| format!("secret_file {shown}: {e}"))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(format!(
            "secret_file {shown}: anyone on the host can read it (mode {mode:04o}): chmod o-rwx, and give it to the daemon's user or group"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("secret_file {shown}: {e}"))?;
    let secret = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("secret"))
        .map(|rest| {
            rest.trim_start_matches([':', ' ', '\t'])
                .trim_end_matches(';')
                .trim()
                .trim_matches('"')
        })
        .unwrap_or(text.trim());
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "# keys\n[tsig_key.transfer]\nalgorithm = \"hmac-sha256\"\nsecret = \"c2VjcmV0\"  # the shared one\n\n[tsig_key.other]\nsecret_file = \"other.key\"\n";

    #[test]
    fn secrets_are_hidden_and_kept_when_sent_back_hidden() {
        let hidden = hide_secrets(POLICY).unwrap();
        assert!(!hidden.contains("c2VjcmV0"), "{hidden}");
        assert_eq!(
            hidden,
            POLICY.replace("\"c2VjcmV0\"", &format!("\"{HIDDEN}\""))
        );
        let edited = hidden.replace("hmac-sha256", "hmac-sha512");
        assert_eq!(
            restore_secrets(&edited, POLICY).unwrap(),
            POLICY.replace("hmac-sha256", "hmac-sha512")
        );
        // A new secret written in the editor is taken as written.
        let replaced = hidden.replace(HIDDEN, "bmV3");
        assert_eq!(restore_secrets(&replaced, POLICY).unwrap(), replaced);
        // A hidden secret for a key the file does not have cannot be kept.
        let renamed = hidden.replace("tsig_key.transfer", "tsig_key.fresh");
        assert!(matches!(
            restore_secrets(&renamed, POLICY),
            Err(SecretError::NothingToKeep(name)) if name == "fresh"
        ));
    }

    #[test]
    fn a_secret_file_is_read_in_each_format_and_must_not_be_world_readable() {
        let dir = std::env::temp_dir().join(format!("dnslb-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("transfer.key");
        for text in [
            "c2VjcmV0\n",
            "key \"transfer\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n",
            "key:\n  - id: transfer\n    algorithm: hmac-sha256\n    secret: c2VjcmV0\n",
        ] {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert_eq!(read_secret_file(&file).unwrap(), "c2VjcmV0", "{text}");
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_secret_file(&file).unwrap_err();
        assert!(
            error.contains("anyone on the host can read it (mode 0644)"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
