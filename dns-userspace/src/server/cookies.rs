//! Server cookie secrets (RFC 9018 §5): made at start and rotated on a
//! period, the previous one still accepted until the next rotation; or read
//! from a file, which a fleet shares so that a cookie from one server is
//! valid at all of them. The responder and the kernel get the same secrets;
//! the kernel also gets the offset from its boot clock to Unix time.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use dns_common::cookie::CookieSecrets;
use nix::time::{ClockId, clock_gettime};

/// The SipHash-2-4 keys: the one new cookies are made with, and the one
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieKeys {
    pub current: [u8; 16],
    pub previous: Option<[u8; 16]>,
}

#[derive(Debug, thiserror::Error)]
pub enum CookieFileError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
    #[error("{}: no secret in the file", path.display())]
    Empty { path: PathBuf },
}

impl CookieKeys {
    /// A fresh random key, nothing before it.
    pub fn generated() -> io::Result<CookieKeys> {
        Ok(CookieKeys {
            current: random_key()?,
            previous: None,
        })
    }

    /// A fresh random key; the current one becomes the previous.
    pub fn rotated(&self) -> io::Result<CookieKeys> {
        Ok(CookieKeys {
            current: random_key()?,
            previous: Some(self.current),
        })
    }

    /// Reads a secret file: the current secret on its first line, the
    /// previous one (still accepted) optionally on the second, each as 32
    /// hex digits; blank lines and `#` comments are skipped.
    pub fn read(path: &Path) -> Result<CookieKeys, CookieFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| CookieFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |problem| CookieFileError::Line {
                path: path.to_path_buf(),
                line: index + 1,
                problem,
            };
            if keys.len() == 2 {
                return Err(problem("more than two secrets (current, then previous)"));
            }
            keys.push(parse_hex_key(line).ok_or_else(|| problem("a secret is 32 hex digits"))?);
        }
        match keys.as_slice() {
            [current] => Ok(CookieKeys {
                current: *current,
                previous: None,
            }),
            [current, previous] => Ok(CookieKeys {
                current: *current,
                previous: Some(*previous),
            }),
            _ => Err(CookieFileError::Empty {
                path: path.to_path_buf(),
            }),
        }
    }

    /// The secrets as the kernel and the responder read them, with the
    /// kernel's clock offset as of now.
    pub fn secrets(&self) -> CookieSecrets {
        let mut secrets = CookieSecrets::from_keys(self.current, self.previous);
        secrets.clock_offset_ns = clock_offset_ns();
        secrets
    }
}

fn parse_hex_key(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

fn random_key() -> io::Result<[u8; 16]> {
    let mut key = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

/// Nanoseconds from the kernel's boot clock (what XDP reads cheaply) to
/// Unix time.
fn clock_offset_ns() -> u64 {
    let nanos = |clock| {
        clock_gettime(clock).map_or(0, |t| {
            (t.tv_sec() as u64).wrapping_mul(1_000_000_000) + t.tv_nsec() as u64
        })
    };
    nanos(ClockId::CLOCK_REALTIME).wrapping_sub(nanos(ClockId::CLOCK_BOOTTIME))
}

/// Unix time in seconds, as cookie timestamps count it.
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_read_with_their_errors() {
        let dir = std::env::temp_dir().join(format!("dnslb-cookies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(
            &file,
            "# fleet secret\n000102030405060708090a0b0c0d0e0f\n\nffeeddccbbaa99887766554433221100\n",
        )
        .unwrap();
        let keys = CookieKeys::read(&file).unwrap();
        assert_eq!(keys.current[15], 0x0f);
        assert_eq!(keys.previous.map(|p| p[0]), Some(0xff));

        std::fs::write(&file, "# fleet secret\n0001020304\n").unwrap();
        let error = CookieKeys::read(&file).unwrap_err().to_string();
        assert!(
            error.ends_with("secret:2: a secret is 32 hex digits"),
            "{error}"
        );
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            CookieKeys::read(&file),
            Err(CookieFileError::Empty { .. })
        ));
    }

    #[test]
    fn the_kernel_clock_offset_gives_unix_time() {
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).unwrap();
        let boot_ns = boot.tv_sec() as u64 * 1_000_000_000 + boot.tv_nsec() as u64;
        let unix = (boot_ns.wrapping_add(clock_offset_ns()) / 1_000_000_000) as u32;
        assert!(unix.abs_diff(unix_now()) <= 1);
    }

    #[test]
    fn rotation_keeps_the_previous_key() {
        let keys = CookieKeys::generated().unwrap();
        let rotated = keys.rotated().unwrap();
        assert_eq!(rotated.previous, Some(keys.current));
        assert_ne!(rotated.current, keys.current);
    }
}
