//! The names most queried of the daemon over the last minute, for
//! `dnslb stats`. Counts go into 30-second buckets; the last minute is the
//! bucket being filled and the one before. Each bucket holds at most
//! [`MAX_NAMES`] distinct names, so a flood of random names costs bounded
//! memory (later names of a full bucket are counted as `others`).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::{
    shared::Shared,
    zone::{WireName, wire},
};

const BUCKET: Duration = Duration::from_secs(30);
pub const MAX_NAMES: usize = 10_000;

#[derive(Debug, Default)]
struct Bucket {
    names: HashMap<Box<[u8]>, u64>,
    others: u64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    current: Bucket,
    previous: Bucket,
}

#[derive(Debug)]
pub struct TopNames {
    window: Shared<Window>,
}

impl Default for TopNames {
    fn default() -> Self {
        TopNames::starting(Instant::now())
    }
}

impl TopNames {
    fn starting(now: Instant) -> TopNames {
        TopNames {
            window: Shared::new(
                "the query name counts",
                Window {
                    started: now,
                    current: Bucket::default(),
                    previous: Bucket::default(),
                },
            ),
        }
    }

    /// Counts the question names of `queries` (DNS messages as received),
    /// under one lock.
    pub fn count<'a>(&self, queries: impl IntoIterator<Item = &'a [u8]>) {
        self.count_at(Instant::now(), queries);
    }

    fn count_at<'a>(&self, now: Instant, queries: impl IntoIterator<Item = &'a [u8]>) {
        let Ok(mut window) = self.window.lock() else {
            return;
        };
        window.advance(now);
        let mut name = [0u8; 255];
        for query in queries {
            let Some(len) = query
                .get(12..)
                .and_then(|q| wire::read_lowercase(q, &mut name))
            else {
                continue;
            };
            let bucket = &mut window.current;
            let room = bucket.names.len() < MAX_NAMES;
            match bucket.names.get_mut(&name[..len]) {
                Some(count) => *count += 1,
                None if room => {
                    bucket.names.insert(name[..len].into(), 1);
                }
                None => bucket.others += 1,
            }
        }
    }

    /// The `n` names most queried over the last minute, most first, as
    /// presentation names.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        self.top_at(Instant::now(), n)
    }

    fn top_at(&self, now: Instant, n: usize) -> Vec<(String, u64)> {
        let Ok(mut window) = self.window.lock() else {
            return Vec::new();
        };
        window.advance(now);
        let mut totals: HashMap<&[u8], u64> = HashMap::new();
        for bucket in [&window.current, &window.previous] {
            for (name, count) in &bucket.names {
                *totals.entry(name).or_default() += count;
            }
        }
        let mut sorted: Vec<(&[u8], u64)> = totals.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        sorted
            .into_iter()
            .take(n)
            .map(|(name, count)| (WireName::from(name).to_string(), count))
            .collect()
    }
}

impl Window {
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < BUCKET {
            return;
        }
        self.previous = if elapsed < 2 * BUCKET {
            std::mem::take(&mut self.current)
        } else {
            // Nothing counted for a whole bucket: both are stale.
            self.current = Bucket::default();
            Bucket::default()
        };
        self.started = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut message = vec![0u8; 12];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            message.push(label.len() as u8);
            message.extend_from_slice(label.as_bytes());
        }
        message.extend_from_slice(&[0, 0, 1, 0, 1]);
        message
    }

    #[test]
    fn ranks_names_of_the_last_minute_case_blind() {
        let start = Instant::now();
        let top = TopNames::starting(start);
        let (www, mail, old) = (
            query("www.example."),
            query("MAIL.example."),
            query("old.example."),
        );
        top.count_at(start, [old.as_slice()]);
        let later = start + BUCKET;
        top.count_at(later, [www.as_slice(), www.as_slice(), mail.as_slice()]);
        top.count_at(later, [query("mail.Example.").as_slice(), www.as_slice()]);
        assert_eq!(
            top.top_at(later, 2),
            [
                ("www.example.".to_owned(), 3),
                ("mail.example.".to_owned(), 2)
            ]
        );
        // A bucket later, `old` has left the window, the rest has not.
        let names: Vec<String> = top
            .top_at(later + BUCKET, 10)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["www.example.", "mail.example."]);
        assert!(top.top_at(later + 3 * BUCKET, 10).is_empty());
    }

    #[test]
    fn a_flood_of_names_is_bounded() {
        let start = Instant::now();
        let top = TopNames::starting(start);
        let queries: Vec<Vec<u8>> = (0..MAX_NAMES + 50)
            .map(|i| query(&format!("n{i}.example.")))
            .collect();
        top.count_at(start, queries.iter().map(Vec::as_slice));
        let window = top.window.lock().unwrap();
        assert_eq!(window.current.names.len(), MAX_NAMES);
        assert_eq!(window.current.others, 50);
    }
}
