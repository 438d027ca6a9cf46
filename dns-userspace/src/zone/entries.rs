//! Where each entry of a master file ends.
//!
//! hickory's parser reports what is wrong but not where. An entry (a record
//! or a `$` directive) ends at a newline outside parentheses, quotes and
//! comments, so the parser can be rerun on whole-entry prefixes of the file
//! to find the first entry at which a problem appears.

/// An entry: the line it starts on (1-based) and the byte offset just past
/// its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub end: usize,
}

/// The file's entries, blank and comment-only lines left out.
pub fn entries(text: &str) -> Vec<Entry> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    let (mut in_quotes, mut in_comment, mut escaped) = (false, false, false);
    let mut line = 1;
    let mut start_line = None;
    for (at, ch) in text.char_indices() {
        if ch == '\n' {
            line += 1;
            in_comment = false;
            escaped = false;
            if depth == 0
                && !in_quotes
                && let Some(start) = start_line.take()
            {
                found.push(Entry {
                    line: start,
                    end: at + 1,
                });
            }
            continue;
        }
        if in_comment {
            continue;
        }
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' => escaped = true,
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => in_comment = true,
            '(' if !in_quotes => depth += 1,
            ')' if !in_quotes => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !in_comment && !ch.is_whitespace() && start_line.is_none() {
            start_line = Some(line);
        }
    }
    if let Some(start) = start_line {
        found.push(Entry {
            line: start,
            end: text.len(),
        });
    }
    found
}

/// The first entry for which `fails` holds on the file up to and including
/// it, assuming that once it holds it keeps holding for longer prefixes.
pub fn first_failing<'a>(
    text: &str,
    entries: &'a [Entry],
    mut fails: impl FnMut(&str) -> bool,
) -> Option<&'a Entry> {
    let (mut low, mut high) = (0, entries.len());
    while low < high {
        let middle = low + (high - low) / 2;
        if fails(&text[..entries[middle].end]) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    entries.get(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_span_parentheses_and_skip_comments() {
        let text = "; header\n$TTL 60\n@ SOA ns host ( 1 ; serial\n 2 3 4 5 )\n\nwww A 192.0.2.1 ; (not open\ntxt TXT \"a ( b\"\n";
        let lines: Vec<usize> = entries(text).iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 6, 7]);
    }

    #[test]
    fn finds_the_first_failing_prefix() {
        let text = "a\nb\nBAD\nc\n";
        let found = entries(text);
        let bad = first_failing(text, &found, |prefix| prefix.contains("BAD")).unwrap();
        assert_eq!(bad.line, 3);
        assert!(first_failing(text, &found, |_| false).is_none());
    }
}
