//! Where each entry of a master file ends.
//!
//! hickory's parser reports what is wrong but not where. An entry (a record
//! or a `$` directive) ends at a newline outside parentheses, quotes and
//! comments, so the parser can be rerun on whole-entry prefixes of the file
//! to find the first entry at which a problem appears.

/// An entry: the line it starts on (1-based), the byte offsets of its
/// first character and just past its end, and whether it names its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub start: usize,
    pub end: usize,
    /// Starts in the first column: a directive, or a record with an owner
    /// of its own (not the previous record's).
    pub in_first_column: bool,
}

impl Entry {
    pub fn text<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// The file's entries, blank and comment-only lines left out.
pub fn entries(text: &str) -> Vec<Entry> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    let (mut in_quotes, mut in_comment, mut escaped) = (false, false, false);
    let mut line = 1;
    let mut line_start = 0;
    // The entry being read: its line, first byte, and whether it began in
    // the first column.
    let mut current: Option<(usize, usize, bool)> = None;
    let mut close = |current: &mut Option<(usize, usize, bool)>, end: usize| {
        if let Some((line, start, in_first_column)) = current.take() {
            found.push(Entry {
                line,
                start,
                end,
                in_first_column,
            });
        }
    };
    for (at, ch) in text.char_indices() {
        if ch == '\n' {
            line += 1;
            line_start = at + 1;
            in_comment = false;
            escaped = false;
            if depth == 0 && !in_quotes {
                close(&mut current, at + 1);
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
        if !in_comment && !ch.is_whitespace() && current.is_none() {
            current = Some((line, line_start, at == line_start));
        }
    }
    close(&mut current, text.len());
    found
}

/// One word of an entry: where it is in the entry's text, and what it
/// says (a quoted string without its quotes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub range: std::ops::Range<usize>,
    pub text: String,
}

/// An entry's words: split at blanks and parentheses, comments left out,
/// a quoted string (blanks, `;` and parentheses in it) one word, an
/// escaped character kept with its backslash.
pub fn words(entry: &str) -> Vec<Word> {
    let mut found = Vec::new();
    let mut word: Option<Word> = None;
    let mut chars = entry.char_indices().peekable();
    let mut quoted = false;
    while let Some((at, ch)) = chars.next() {
        let separates = !quoted && (ch.is_whitespace() || matches!(ch, '(' | ')' | ';'));
        if separates {
            found.extend(word.take());
            if ch == ';' {
                while chars.next_if(|&(_, next)| next != '\n').is_some() {}
            }
            continue;
        }
        let current = word.get_or_insert_with(|| Word {
            range: at..at,
            text: String::new(),
        });
        match ch {
            '\\' => {
                current.text.push(ch);
                if let Some((_, escaped)) = chars.next() {
                    current.text.push(escaped);
                }
            }
            '"' => quoted = !quoted,
            _ => current.text.push(ch),
        }
        current.range.end = chars.peek().map_or(entry.len(), |&(next, _)| next);
    }
    found.extend(word);
    found
}

/// The first of `entries` for which `fails` holds, assuming that once it
/// holds for an entry it holds for every later one (`fails` is typically
/// "the file up to and including this entry does not parse").
pub fn first_failing(entries: &[Entry], mut fails: impl FnMut(&Entry) -> bool) -> Option<&Entry> {
    let (mut low, mut high) = (0, entries.len());
    while low < high {
        let middle = low + (high - low) / 2;
        if fails(&entries[middle]) {
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
    fn words_know_where_they_are_and_quotes_hold_one_together() {
        let entry = "txt 60 TXT ( \"a ; (b)\" \\; ) ; comment\n";
        let words = words(entry);
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["txt", "60", "TXT", "a ; (b)", "\\;"]);
        let spans: Vec<&str> = words.iter().map(|w| &entry[w.range.clone()]).collect();
        assert_eq!(spans, ["txt", "60", "TXT", "\"a ; (b)\"", "\\;"]);
    }

    #[test]
    fn entries_span_parentheses_and_skip_comments() {
        let text = "; header\n$TTL 60\n@ SOA ns host ( 1 ; serial\n 2 3 4 5 )\n\nwww A 192.0.2.1 ; (not open\ntxt TXT \"a ( b\"\n";
        let found = entries(text);
        let lines: Vec<usize> = found.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 6, 7]);
        assert_eq!(found[0].text(text), "$TTL 60\n");
        assert!(found.iter().all(|e| e.in_first_column));
        let continued = entries("www A 192.0.2.1\n    A 192.0.2.2\n");
        assert_eq!(
            continued
                .iter()
                .map(|e| e.in_first_column)
                .collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn finds_the_first_failing_prefix() {
        let text = "a\nb\nBAD\nc\n";
        let found = entries(text);
        let bad = first_failing(&found, |entry| text[..entry.end].contains("BAD")).unwrap();
        assert_eq!(bad.line, 3);
        assert!(first_failing(&found, |_| false).is_none());
    }
}
