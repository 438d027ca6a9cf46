//! `GET /v1/events`: server-sent events for live views. `change` is sent
//! at once on connecting and whenever what is answered changes (a health
//! verdict, a drain, a reload), with the count of changes so far; `tick`
//! every second, for rates. A stream ends after [`STREAM_LIFETIME`], inside
//! the listener's connection deadline; clients connect again.

use std::{convert::Infallible, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, stream};
use tokio::{
    sync::watch,
    time::{Instant, Interval, MissedTickBehavior},
};

/// How long one event stream lasts.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(50);

/// How often a `tick` is sent.
pub const TICK: Duration = Duration::from_secs(1);

struct Follow {
    changes: watch::Receiver<u64>,
    ticks: Interval,
    ends: Instant,
    /// The first event (the state now) is yet to be sent.
    first: bool,
}

/// The event stream following `changes`.
pub fn stream(changes: watch::Receiver<u64>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut ticks = tokio::time::interval_at(Instant::now() + TICK, TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let follow = Follow {
        changes,
        ticks,
        ends: Instant::now() + STREAM_LIFETIME,
        first: true,
    };
    let events = stream::unfold(follow, |mut follow| async move {
        if follow.first {
            follow.first = false;
            let count = *follow.changes.borrow_and_update();
            return Some((Ok(change(count)), follow));
        }
        let event = tokio::select! {
            biased;
            changed = follow.changes.changed() => match changed {
                Ok(()) => change(*follow.changes.borrow_and_update()),
                // The daemon is stopping.
                Err(_) => return None,
            },
            _ = tokio::time::sleep_until(follow.ends) => return None,
            _ = follow.ticks.tick() => Event::default().event("tick").data(""),
        };
        Some((Ok(event), follow))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn change(count: u64) -> Event {
    Event::default().event("change").data(count.to_string())
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    /// The events as the wire carries them, one after another.
    async fn next_event(
        body: &mut (impl Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    ) -> String {
        let chunk = body.next().await.expect("an event").expect("no error");
        String::from_utf8(chunk.to_vec()).expect("text")
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_is_sent_at_once_ticks_every_second_and_the_stream_ends() {
        use axum::response::IntoResponse;
        let (changes, receiver) = watch::channel(4);
        let response = stream(receiver).into_response();
        let mut body = response.into_body().into_data_stream();
        assert_eq!(next_event(&mut body).await, "event: change\ndata: 4\n\n");
        changes.send_replace(5);
        assert_eq!(next_event(&mut body).await, "event: change\ndata: 5\n\n");
        let before = Instant::now();
        assert_eq!(next_event(&mut body).await, "event: tick\n\n");
        assert_eq!(before.elapsed(), TICK);
        let mut events = 0;
        while let Some(chunk) = body.next().await {
            chunk.expect("no error");
            events += 1;
        }
        // One tick a second until the stream's end (keep-alives come only
        // after 15 s of silence, which ticks never leave).
        assert_eq!(events, STREAM_LIFETIME.as_secs() as usize - 2);
    }
}
