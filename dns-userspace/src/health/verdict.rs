//! Rise and fall: a run of results, not one, changes an endpoint's state.

/// One check's state on one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    up: bool,
    /// Whether any result has been seen: the first one decides at once, so
    /// an endpoint that is down when the daemon starts is never served for
    /// `fall` intervals, and one that is up is not held back for `rise`.
    settled: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Verdict {
    /// Up until the first result, which decides at once.
    pub fn new(rise: u32, fall: u32) -> Verdict {
        Verdict {
            up: true,
            settled: false,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// Already `up` (or down): from the first result on, the thresholds
    /// apply.
    pub fn settled(up: bool, rise: u32, fall: u32) -> Verdict {
        Verdict {
            up,
            settled: true,
            ..Verdict::new(rise, fall)
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Counts a result; returns the new state when it changed.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        if !self.settled {
            self.settled = true;
            let changed = self.up != passed;
            self.up = passed;
            return changed.then_some(passed);
        }
        if passed == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.up = passed;
        self.streak = 0;
        Some(passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides_then_thresholds_apply() {
        let mut verdict = Verdict::new(2, 3);
        assert!(verdict.is_up());
        assert_eq!(verdict.record(true), None);
        // Two failures are not enough for fall = 3, and a pass resets them.
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(true), None);
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(false), Some(false));
        assert!(!verdict.is_up());
        // Rise = 2.
        assert_eq!(verdict.record(true), None);
        assert_eq!(verdict.record(true), Some(true));

        let mut down_at_start = Verdict::new(5, 5);
        assert_eq!(down_at_start.record(false), Some(false));
    }
}
