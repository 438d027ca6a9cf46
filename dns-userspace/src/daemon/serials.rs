//! Serial discipline on every change of a zone's data: a zone whose data
//! changed must be served with a higher SOA serial, or secondaries never
//! ask for it (their SOA query, or a NOTIFY, shows nothing new). By the
//! zone's rule the change is refused, or (`serial = "auto"`) dnslb raises
//! the serial itself and writes it into the zone file.

use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;

use crate::{
    file_error::{FileError, FileErrors},
    server::TransferRules,
    zone::{
        Catalog, WireName, parse_zone,
        serial::{SerialChange, SerialRule, serial_change, with_serial},
    },
};

/// A zone file whose serial dnslb raised: written back once the whole
/// change is checked, before it is applied.
#[derive(Debug)]
pub struct SerialWrite {
    pub file: PathBuf,
    pub text: String,
}

impl SerialWrite {
    pub fn write(&self) -> std::io::Result<()> {
        crate::durable::replace_file(&self.file, self.text.as_bytes())
    }
}

/// Holds each zone of `new` read from its file (`zones`) that replaces a
/// zone of `old` to its serial rule in `rules`: with `auto`, the zone in
/// `new` gets the raised serial and the file to write back is returned;
/// otherwise a change whose serial did not rise is a problem. Secondary
/// zones serve their primary's serial and are left alone.
pub fn hold_serials<'a>(
    old: &Catalog,
    new: &mut Catalog,
    zones: impl IntoIterator<Item = (&'a Name, &'a Path)>,
    rules: &TransferRules,
) -> Result<Vec<SerialWrite>, FileErrors> {
    let mut writes = Vec::new();
    let mut problems = Vec::new();
    for (origin, file) in zones {
        let Some(wire) = WireName::from_name(origin) else {
            continue;
        };
        let rule = rules.get(&wire);
        if rule.is_some_and(|rule| rule.primary.is_some()) {
            continue;
        }
        let (Some(before), Some(after)) = (old.get(&wire), new.get(&wire)) else {
            continue;
        };
        // dnslb numbers the versions of a zone it signs itself.
        if after.is_online() || serial_change(before, after) != SerialChange::NotRaised {
            continue;
        }
        let (served, read) = (before.serial(), after.serial());
        match rule.map(|rule| rule.serial).unwrap_or_default() {
            SerialRule::File => problems.push(FileError::new(
                file,
                format!(
                    "zone {origin}: the data changed but the SOA serial {read} is not above \
                     {served}, the one served: secondaries would not ask for the change \
                     (raise the serial, or set serial = \"auto\" on the zone)"
                ),
            )),
            SerialRule::Auto => match raised(origin, file, served.wrapping_add(1)) {
                Ok((zone, write)) => {
                    new.insert(zone);
                    writes.push(write);
                }
                Err(problem) => problems.push(problem),
            },
        }
    }
    FileErrors::check(problems)?;
    Ok(writes)
}

/// The zone `origin` as `file` has it with `serial`, and the text to write.
fn raised(
    origin: &Name,
    file: &Path,
    serial: u32,
) -> Result<(crate::zone::Zone, SerialWrite), FileError> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| FileError::new(file, format!("cannot read the zone file: {error}")))?;
    let text = with_serial(&text, serial).ok_or_else(|| {
        FileError::new(
            file,
            format!(
                "zone {origin}: serial = \"auto\" needs the SOA record in this file, not an $INCLUDE"
            ),
        )
    })?;
    let zone = parse_zone(origin, &text, file)?;
    tracing::info!(
        "zone {origin}: the data changed, serial raised to {serial} in {}",
        file.display()
    );
    let file = file.to_owned();
    Ok((zone, SerialWrite { file, text }))
}
