use std::{net::IpAddr, time::Duration};

use tokio::time::Instant;

use super::*;
use crate::load::{AgentReply, LoadSource, Mode};

fn addr(last: u8) -> IpAddr {
    IpAddr::from([198, 18, 1, last])
}

fn weighing(smoothing: f64, min_change: f64, slow_start: Option<u64>) -> Weighing {
    Weighing {
        load: Some(LoadSpec {
            source: LoadSource::Push,
            mode: Mode::Watermarks {
                low: 0.3,
                high: 0.8,
            },
            capacity: None,
            smoothing,
            min_change,
            expire: Duration::from_secs(10),
        }),
        slow_start: slow_start.map(Duration::from_secs),
    }
}

/// Settles one pool `web` of endpoints .1 to .3, with `up` per endpoint.
fn settle(book: &mut LoadBook, weighing: &Weighing, now: Instant, up: [bool; 3]) -> bool {
    let endpoints = (1..=3).zip(up).map(|(i, up)| (addr(i), up)).collect();
    !book
        .settle(now, [("web", weighing, endpoints)].into_iter())
        .is_empty()
}

fn push(book: &mut LoadBook, weighing: &Weighing, last: u8, load: f64, now: Instant) {
    let spec = weighing.load.as_ref().expect("a load spec");
    book.report("web", addr(last), Reading::Load(load), spec, now);
}

fn shares(book: &LoadBook) -> Vec<f64> {
    (1..=3)
        .map(|i| (book.effect("web", addr(i)).share * 1000.0).round() / 1000.0)
        .collect()
}

#[test]
fn pushed_loads_become_shares_by_the_watermarks() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(1.0, 0.0, None),
        Instant::now(),
    );
    settle(&mut book, &weighing, t0, [true; 3]);
    for (i, load) in [(1, 0.2), (2, 0.5), (3, 0.9)] {
        push(&mut book, &weighing, i, load, t0);
    }
    assert!(settle(&mut book, &weighing, t0, [true; 3]));
    assert_eq!(shares(&book), [1.0, 0.6, 0.0]);
    assert!(book.effect("web", addr(3)).is_shed());
    let status = book.status("web", addr(3), &weighing, t0);
    assert_eq!(status.load, Some(0.9));
    assert!(status.why.contains("at or above high"), "{}", status.why);
}

#[test]
fn figures_are_smoothed_and_small_moves_are_not_written() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(0.5, 0.1, None),
        Instant::now(),
    );
    push(&mut book, &weighing, 2, 0.5, t0);
    settle(&mut book, &weighing, t0, [true; 3]);
    assert_eq!(shares(&book)[1], 0.6);
    // 0.5 then 0.6: the average is 0.55, a share of 0.5, moved by 0.1.
    push(&mut book, &weighing, 2, 0.6, t0);
    assert!(settle(&mut book, &weighing, t0, [true; 3]));
    assert_eq!(shares(&book)[1], 0.5);
    // 0.55 then 0.57: the average 0.56 moves the share by 0.02, kept.
    push(&mut book, &weighing, 2, 0.57, t0);
    assert!(!settle(&mut book, &weighing, t0, [true; 3]));
    assert_eq!(shares(&book)[1], 0.5);
    // Shedding is always written, however small the step.
    for _ in 0..20 {
        push(&mut book, &weighing, 2, 0.95, t0);
    }
    assert!(settle(&mut book, &weighing, t0, [true; 3]));
    assert_eq!(shares(&book)[1], 0.0);
}

#[test]
fn a_report_that_stops_arriving_expires_to_the_configured_weight() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(1.0, 0.05, None),
        Instant::now(),
    );
    push(&mut book, &weighing, 1, 0.9, t0);
    settle(&mut book, &weighing, t0, [true; 3]);
    assert_eq!(shares(&book), [0.0, 1.0, 1.0]);
    assert!(!settle(
        &mut book,
        &weighing,
        t0 + Duration::from_secs(9),
        [true; 3]
    ));
    assert!(settle(
        &mut book,
        &weighing,
        t0 + Duration::from_secs(10),
        [true; 3]
    ));
    assert_eq!(shares(&book), [1.0, 1.0, 1.0]);
    let status = book.status("web", addr(1), &weighing, t0 + Duration::from_secs(12));
    assert!(status.why.contains("expired"), "{}", status.why);
    assert_eq!(status.load, None);
}

#[test]
fn a_pool_with_every_endpoint_shed_is_answered_as_if_none_were() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(1.0, 0.0, None),
        Instant::now(),
    );
    for i in 1..=3 {
        push(&mut book, &weighing, i, 0.95, t0);
    }
    // The third is down: only the up ones decide saturation.
    settle(&mut book, &weighing, t0, [true, true, false]);
    assert!(book.is_saturated("web"));
    assert_eq!(shares(&book), [1.0, 1.0, 1.0]);
    push(&mut book, &weighing, 2, 0.5, t0);
    assert!(settle(&mut book, &weighing, t0, [true, true, false]));
    assert!(!book.is_saturated("web"));
    assert_eq!(shares(&book), [0.0, 0.6, 0.0]);
}

#[test]
fn agent_words_drain_maint_and_ready_as_haproxy() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(1.0, 0.0, None),
        Instant::now(),
    );
    let spec = weighing.load.clone().expect("a load spec");
    let agent = |state, share| Reading::Agent(AgentReply { state, share });
    book.report(
        "web",
        addr(1),
        agent(Some(AgentState::Drain), None),
        &spec,
        t0,
    );
    book.report(
        "web",
        addr(2),
        agent(Some(AgentState::Maint), None),
        &spec,
        t0,
    );
    book.report("web", addr(3), agent(None, Some(0.75)), &spec, t0);
    settle(&mut book, &weighing, t0, [true; 3]);
    assert_eq!(
        book.effect("web", addr(1)),
        Effect {
            share: 0.0,
            out: false
        }
    );
    assert_eq!(
        book.effect("web", addr(2)),
        Effect {
            share: 0.0,
            out: true
        }
    );
    assert_eq!(shares(&book)[2], 0.75);
    book.report(
        "web",
        addr(2),
        agent(Some(AgentState::Ready), None),
        &spec,
        t0,
    );
    settle(&mut book, &weighing, t0, [true; 3]);
    assert_eq!(book.effect("web", addr(2)), Effect::FULL);
}

#[test]
fn an_endpoint_that_comes_back_ramps_over_slow_start_but_not_at_the_first_settling() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(1.0, 0.0, Some(10)),
        Instant::now(),
    );
    settle(&mut book, &weighing, t0, [true, true, false]);
    assert_eq!(shares(&book), [1.0, 1.0, 1.0]);
    assert!(!ramping(&book, &weighing, t0));
    settle(&mut book, &weighing, t0, [true; 3]);
    assert_eq!(shares(&book)[2], RAMP_START);
    assert!(ramping(&book, &weighing, t0));
    settle(&mut book, &weighing, t0 + Duration::from_secs(5), [true; 3]);
    assert_eq!(shares(&book)[2], 0.55);
    settle(
        &mut book,
        &weighing,
        t0 + Duration::from_secs(10),
        [true; 3],
    );
    assert_eq!(shares(&book)[2], 1.0);
    assert!(!ramping(&book, &weighing, t0 + Duration::from_secs(10)));
}

/// Whether any endpoint's status says it ramps up.
fn ramping(book: &LoadBook, weighing: &Weighing, now: Instant) -> bool {
    (1..=3).any(|i| {
        book.status("web", addr(i), weighing, now)
            .why
            .contains("slow start")
    })
}

#[test]
fn bad_reports_are_logged_once_per_cause_until_a_good_one() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(1.0, 0.0, None),
        Instant::now(),
    );
    assert!(book.problem("web", addr(1), "not a number"));
    assert!(!book.problem("web", addr(1), "not a number"));
    assert!(book.problem("web", addr(1), "timed out"));
    push(&mut book, &weighing, 1, 0.1, t0);
    assert!(book.problem("web", addr(1), "not a number"));
}

#[test]
fn a_share_below_the_whole_weight_at_the_first_settling_is_a_change() {
    let (mut book, weighing, t0) = (
        LoadBook::default(),
        weighing(1.0, 0.0, None),
        Instant::now(),
    );
    push(&mut book, &weighing, 2, 0.5, t0);
    assert!(
        settle(&mut book, &weighing, t0, [true; 3]),
        "0.6 of .2's weight"
    );
    let mut quiet = LoadBook::default();
    assert!(
        !settle(&mut quiet, &weighing, t0, [true; 3]),
        "nothing reported: every weight whole, as before"
    );
}
