//! What an endpoint or its agent says of its load, parsed.
//!
//! Two forms are read: a number (a utilisation from 0 to 1, or a count
//! that the pool's `capacity` turns into one), and the words of HAProxy's
//! agent-check (`75%`, `drain`, `maint`, `ready`, `up`, `down`, several in
//! one reply, separated by spaces or commas), so that agents written for
//! HAProxy work unchanged.

/// One report, as read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// A load figure, before `capacity` divides it.
    Load(f64),
    /// What an agent says, in HAProxy's words.
    Agent(AgentReply),
}

/// An agent's reply: a state word, a weight percentage, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AgentReply {
    pub state: Option<AgentState>,
    /// `75%`: the share of the configured weight to use (0.75), as
    /// HAProxy's agent sets a server's weight.
    pub share: Option<f64>,
}

/// HAProxy's agent states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    /// `ready` or `up`: serving; clears `drain` and `maint`.
    Ready,
    /// `drain`: weight 0, still up (shed).
    Drain,
    /// `maint` or `down`: out of the answers until `ready`.
    Maint,
}

/// Why a report could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadingError {
    #[error("empty report")]
    Empty,
    #[error("`{0}` is neither a number nor an agent word (75%, drain, maint, ready, up, down)")]
    Unknown(String),
    #[error("`{0}` is not a finite number of zero or more")]
    OutOfRange(String),
}

impl Reading {
    /// A figure given as a number.
    pub fn figure(number: f64) -> Result<Reading, ReadingError> {
        load(number, &number.to_string()).map(Reading::Load)
    }

    /// Parses a report: a number, or agent words.
    pub fn parse(text: &str) -> Result<Reading, ReadingError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ReadingError::Empty);
        }
        if let Ok(number) = text.parse::<f64>() {
            return load(number, text).map(Reading::Load);
        }
        let mut reply = AgentReply::default();
        for word in text
            .split(|c: char| c.is_ascii_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
        {
            if let Some(percent) = word.strip_suffix('%') {
                let share = percent
                    .parse::<f64>()
                    .map_err(|_| ReadingError::Unknown(word.to_owned()))?;
                reply.share = Some(load(share, word)? / 100.0);
                continue;
            }
            reply.state = Some(match word.to_ascii_lowercase().as_str() {
                "ready" | "up" => AgentState::Ready,
                "drain" => AgentState::Drain,
                "maint" | "down" | "stopped" | "fail" => AgentState::Maint,
                _ => return Err(ReadingError::Unknown(word.to_owned())),
            });
        }
        Ok(Reading::Agent(reply))
    }
}

/// `number` if it is a usable figure: finite and not negative.
fn load(number: f64, text: &str) -> Result<f64, ReadingError> {
    if number.is_finite() && number >= 0.0 {
        Ok(number)
    } else {
        Err(ReadingError::OutOfRange(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_haproxy_agent_words_are_read() {
        assert_eq!(Reading::parse("0.25\n"), Ok(Reading::Load(0.25)));
        assert_eq!(Reading::parse("140"), Ok(Reading::Load(140.0)));
        let agent = |state, share| Ok(Reading::Agent(AgentReply { state, share }));
        assert_eq!(Reading::parse("75%"), agent(None, Some(0.75)));
        assert_eq!(
            Reading::parse("drain"),
            agent(Some(AgentState::Drain), None)
        );
        assert_eq!(
            Reading::parse("MAINT"),
            agent(Some(AgentState::Maint), None)
        );
        assert_eq!(Reading::parse("down"), agent(Some(AgentState::Maint), None));
        assert_eq!(
            Reading::parse("up, 50%\n"),
            agent(Some(AgentState::Ready), Some(0.5))
        );
    }

    #[test]
    fn garbage_negative_and_not_a_number_are_refused() {
        assert_eq!(Reading::parse(" "), Err(ReadingError::Empty));
        assert_eq!(
            Reading::parse("-0.5"),
            Err(ReadingError::OutOfRange("-0.5".into()))
        );
        assert_eq!(
            Reading::parse("NaN"),
            Err(ReadingError::OutOfRange("NaN".into()))
        );
        assert_eq!(
            Reading::parse("inf"),
            Err(ReadingError::OutOfRange("inf".into()))
        );
        assert_eq!(
            Reading::parse("busy"),
            Err(ReadingError::Unknown("busy".into()))
        );
        assert_eq!(
            Reading::parse("-5%"),
            Err(ReadingError::OutOfRange("-5%".into()))
        );
    }
}
