//! The watcher of a durable route, one task per route beside its loop:
//!
//! - keeps every delivery the route holds alive with in-progress
//!   acknowledgements (every third of the ack wait), so a short ack wait
//!   brings a dead instance's messages back within seconds while a slow
//!   handler or a retry keeps its message;
//! - reads the consumer's numbers for health (every 2 s): pending and
//!   unacknowledged messages, the oldest waiting message's age, and how the
//!   route stands (consuming, failing, stalled);
//! - heals: a consumer that is gone (deleted by hand, or the server came
//!   back with an empty store) is created again, and the streams the
//!   service declared are declared again; a stream the service does not
//!   own and that is gone leaves the route failing (health says why) while
//!   it looks again with a growing back-off. Every healing is counted as an
//!   error.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use serde::Deserialize;
use tokio::time::Instant;

use crate::engine::outcome::{Cause, Failure, record_failure};
use crate::error::error_chain;
use crate::jetstream::consumer::{DurableRoute, create_consumer, created_nanos};
use crate::jetstream::declare::{context, lookup};
use crate::service::Service;

/// How often the consumer's numbers are read.
pub(crate) const REFRESH: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to heal.
const MAX_HEAL_BACKOFF: Duration = Duration::from_secs(10);

/// A route with messages waiting is stalled when none arrived for this long
/// (or three ack waits, if longer).
const STALL_AFTER: Duration = Duration::from_secs(30);

/// Starts the watcher of `route`; it runs until aborted (with the health
/// tasks, after the drain).
pub(crate) fn spawn(service: &Service, route: &Arc<DurableRoute>) -> tokio::task::JoinHandle<()> {
    let service = service.clone();
    let route = route.clone();
    tokio::spawn(async move {
        let interval = (route.ack_wait / 3).max(Duration::from_millis(50));
        let mut keepalive = tokio::time::interval(interval);
        let mut refresh = tokio::time::interval(REFRESH);
        let mut heal_backoff = REFRESH;
        let mut next_heal = Instant::now();
        loop {
            tokio::select! {
                _ = keepalive.tick() => keep_alive(&service, &route).await,
                _ = refresh.tick() => {
                    let gone = read_numbers(&service, &route).await;
                    if gone && Instant::now() >= next_heal && !service.is_stopping() {
                        if heal(&service, &route).await {
                            heal_backoff = REFRESH;
                        } else {
                            heal_backoff = (heal_backoff * 2).min(MAX_HEAL_BACKOFF);
                        }
                        next_heal = Instant::now() + heal_backoff;
                    }
                }
            }
        }
    })
}

/// Tells the server that every held delivery is still being worked on.
async fn keep_alive(service: &Service, route: &DurableRoute) {
    let Some(client) = service.client() else {
        return;
    };
    for ack in route.condition.held() {
        let _ = client.publish(ack, AckKind::Progress.into()).await;
    }
}

/// Reads the consumer's numbers into the route's health entry; `true` when
/// the consumer (or its stream) is gone.
async fn read_numbers(service: &Service, route: &DurableRoute) -> bool {
    let stall_after = STALL_AFTER.max(route.ack_wait * 3);
    let info = match tokio::time::timeout(REFRESH * 2, route.consumer.get_info()).await {
        Ok(Ok(info)) => info,
        Ok(Err(error)) => {
            let gone = matches!(
                error.kind(),
                ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
            );
            update_standing(service, route, 0, stall_after);
            tracing::debug!(handler = %route.info.name, error = %error, "cannot read consumer info");
            return gone;
        }
        Err(_) => return false,
    };
    route
        .ack_floor
        .store(info.ack_floor.stream_sequence, Ordering::Relaxed);
    let waiting = info.num_pending + info.num_ack_pending as u64;
    let oldest = if waiting > 0 {
        oldest_age(service, route, info.ack_floor.stream_sequence + 1).await
    } else {
        0.0
    };
    service
        .inner
        .instance
        .update_durable(route.health, |entry| {
            entry.pending = info.num_pending;
            entry.ack_pending = info.num_ack_pending as u64;
            entry.redelivered = info.num_redelivered as u64;
            entry.dead_lettered = route.dead_lettered.load(Ordering::Relaxed);
            entry.oldest_pending_age_s = oldest;
        });
    update_standing(service, route, info.num_pending, stall_after);
    false
}

fn update_standing(service: &Service, route: &DurableRoute, pending: u64, stall_after: Duration) {
    let standing = route.condition.standing(pending, stall_after);
    service
        .inner
        .instance
        .update_durable(route.health, |entry| {
            entry.state = standing.state.to_owned();
            entry.reason = standing.reason;
            entry.last_delivery_age_s = standing.last_delivery_age_s;
        });
}

/// The stored message's time, from `$JS.API.STREAM.MSG.GET`.
#[derive(Deserialize)]
struct Stored {
    message: Option<StoredTime>,
}

#[derive(Deserialize)]
struct StoredTime {
    time: String,
}

/// Seconds since message `sequence` of the route's stream was stored (0
/// when it cannot be read: it was removed, say).
async fn oldest_age(service: &Service, route: &DurableRoute, sequence: u64) -> f64 {
    let request = serde_json::json!({ "seq": sequence }).to_string();
    let Ok(reply) = service
        .request(format!("$JS.API.STREAM.MSG.GET.{}", route.stream), request)
        .await
    else {
        return 0.0;
    };
    let Some(time) = serde_json::from_slice::<Stored>(&reply.payload)
        .ok()
        .and_then(|stored| stored.message)
        .and_then(|message| humantime::parse_rfc3339_weak(&message.time).ok())
    else {
        return 0.0;
    };
    std::time::SystemTime::now()
        .duration_since(time)
        .map_or(0.0, |age| age.as_secs_f64())
}

/// Makes what the route consumes exist again: the service's declared
/// streams, then the consumer, starting after the last acknowledged message
/// seen (from the start when the stream itself was new). `true` when the
/// route can consume again.
async fn heal(service: &Service, route: &DurableRoute) -> bool {
    let Some(js) = context(service) else {
        return false;
    };
    let (stream, stream_was_gone) = match lookup(&js, &route.stream).await {
        Ok(Some(stream)) => (Some(stream), false),
        Ok(None) if route.owned_stream.is_some() => {
            service.declare_streams_again().await;
            (lookup(&js, &route.stream).await.ok().flatten(), true)
        }
        Ok(None) => {
            let problem = format!(
                "stream `{}` is gone, and this service does not declare it; waiting for it to \
                 come back (create it, or let the service that declares it start)",
                route.stream
            );
            note_healing_failed(route, problem);
            return false;
        }
        Err(e) => {
            tracing::debug!(handler = %route.info.name, error = %error_chain(&e), "cannot look up the stream");
            return false;
        }
    };
    let Some(mut stream) = stream else {
        note_healing_failed(
            route,
            format!(
                "stream `{}` is gone and cannot be declared again",
                route.stream
            ),
        );
        return false;
    };
    // Another instance of the service may have created it already.
    if stream.consumer_info(&route.consumer_name).await.is_ok() {
        healed(route);
        return true;
    }
    let mut config = route.consumer_config.clone();
    let floor = route.ack_floor.load(Ordering::Relaxed);
    // A stream made again is consumed from its start; else after what was
    // acknowledged.
    let made_again = match stream.info().await {
        Ok(info) => {
            let created = created_nanos(info);
            let before = route.stream_created.swap(created, Ordering::Relaxed);
            before != created || info.state.last_sequence < floor
        }
        Err(_) => true,
    };
    config.deliver_policy = if stream_was_gone || made_again || floor == 0 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: floor + 1,
        }
    };
    match create_consumer(&stream, &route.stream, &route.consumer_name, config).await {
        Ok(_) => {
            // The dead-letter stream and publish targets' streams may be
            // gone too (an empty server): declared again as well.
            service.declare_streams_again().await;
            let failure = Failure::new(
                503,
                &format!(
                    "the durable consumer `{}` on stream `{}` was gone; created it again",
                    route.consumer_name, route.stream
                ),
                Cause::Error,
            );
            record_failure(&route.info, &failure, 1, &route.info.subject);
            healed(route);
            true
        }
        Err(e) => {
            note_healing_failed(
                route,
                format!(
                    "its durable consumer `{}` is gone and cannot be created again: {}",
                    route.consumer_name,
                    error_chain(&e)
                ),
            );
            false
        }
    }
}

/// The route can consume again: its loop pulls at once.
fn healed(route: &DurableRoute) {
    route.condition.set_problem(None);
    route.repull.notify_one();
}

/// The route stays failing, for `problem` (logged when it changes).
fn note_healing_failed(route: &DurableRoute, problem: String) {
    if route.condition.set_problem(Some(problem.clone())) {
        tracing::error!(handler = %route.info.name, %problem, "durable route cannot consume");
    }
}
