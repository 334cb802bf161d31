//! The live fan-out: every checked bus message goes to every open live
//! stream through a queue of its own, bounded in bytes.
//!
//! A message is shared (`Arc<str>`), so memory is bounded by the sum of the
//! queues (`WEB_MAX_LIVE` x `WEB_LIVE_BUFFER`) whatever the rate. A client
//! whose queue would overflow is dropped at once: its queue is emptied, its
//! stream ends, and its connection is closed (a client that stopped
//! reading would otherwise hold the connection and the server's write
//! buffer forever). Dropped clients are counted and logged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use telestion::tokio::sync::Notify;

/// One message of a live stream: SSE event name and JSON.
pub type Item = (&'static str, Arc<str>);

/// A stream's queue.
#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    dropped: bool,
}

/// One live stream's end of the hub.
pub struct Client {
    queue: Mutex<Queue>,
    ready: Notify,
}

/// What [`Client::next`] found.
pub enum Next {
    /// The next message.
    Item(Item),
    /// The client fell behind and was dropped; nothing follows.
    Dropped,
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock leaves a consistent queue.
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// Waits for the next message.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut queue = lock(&self.queue);
                if queue.dropped {
                    return Next::Dropped;
                }
                if let Some(item) = queue.items.pop_front() {
                    queue.bytes -= item.1.len();
                    return Next::Item(item);
                }
            }
            // A notification sent between the check and here is kept.
            self.ready.notified().await;
        }
    }
}

/// The live streams' hub.
pub struct Hub {
    clients: Mutex<Vec<Weak<Client>>>,
    buffer: usize,
    /// Live streams open.
    pub open: AtomicUsize,
    /// Clients dropped for falling behind, since start.
    pub dropped: AtomicU64,
}

impl Hub {
    /// A hub whose streams queue at most `buffer` bytes each.
    pub fn new(buffer: usize) -> Hub {
        Hub {
            clients: Mutex::new(Vec::new()),
            buffer,
            open: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A new client; it receives messages until it is dropped (the hub
    /// only keeps a weak reference).
    pub fn join(&self) -> Arc<Client> {
        let client = Arc::new(Client {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        });
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|c| c.strong_count() > 0);
        clients.push(Arc::downgrade(&client));
        client
    }

    /// Queues `data` as event `event` for every client; returns how many
    /// clients were dropped because their queue was full.
    pub fn broadcast(&self, event: &'static str, data: Arc<str>) -> usize {
        let mut dropped = 0;
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|weak| {
            let Some(client) = weak.upgrade() else {
                return false;
            };
            let mut queue = lock(&client.queue);
            if queue.bytes + data.len() > self.buffer {
                *queue = Queue {
                    dropped: true,
                    ..Queue::default()
                };
                drop(queue);
                client.ready.notify_one();
                dropped += 1;
                return false;
            }
            queue.bytes += data.len();
            queue.items.push_back((event, data.clone()));
            drop(queue);
            client.ready.notify_one();
            true
        });
        self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[telestion::tokio::test(crate = "telestion::tokio")]
    async fn a_full_queue_drops_its_client_only() {
        let hub = Hub::new(10);
        let slow = hub.join();
        let fast = hub.join();
        assert_eq!(hub.broadcast("t", "123456".into()), 0);
        assert!(matches!(fast.next().await, Next::Item(("t", d)) if &*d == "123456"));
        assert_eq!(hub.broadcast("t", "abcdef".into()), 1, "6 + 6 > 10");
        assert!(matches!(slow.next().await, Next::Dropped));
        assert!(matches!(fast.next().await, Next::Item(_)));
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 1);
        drop(fast);
        assert_eq!(hub.broadcast("t", "x".into()), 0);
        assert!(hub.clients.lock().unwrap().is_empty());
    }
}
