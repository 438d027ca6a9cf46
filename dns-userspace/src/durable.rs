//! Replacing a file so that a reader, or a restart after a crash, sees the
//! old content or the new, never part of either.

use std::{io::Write, path::Path};

/// Writes `bytes` to a temporary file beside `file`, flushed to disk, then
/// renames it over `file` (its directory made if missing). The new file
/// keeps the old one's permissions.
pub fn replace_file(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = std::path::PathBuf::from(temporary);
    let mut out = std::fs::File::create(&temporary)?;
    if let Ok(old) = std::fs::metadata(file) {
        out.set_permissions(old.permissions())?;
    }
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&temporary, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_content_replaces_the_old_and_no_temporary_is_left() {
        let dir = std::env::temp_dir().join(format!("dnslb-durable-{}", std::process::id()));
        let file = dir.join("policy.toml");
        replace_file(&file, b"old").unwrap();
        replace_file(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
