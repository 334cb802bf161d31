//! The telecommands handed to the device, by id: a command is sent at most
//! once per id (the id is its idempotency key), whatever comes again on
//! `telecommand.outgoing` (a redelivery, a repeat with the same message id
//! after the stream's duplicate window). Bounded: the last
//! [`SENT_CAPACITY`] ids.

use std::collections::{HashMap, VecDeque};

use backend_protocol::{Command, TelecommandAck};

/// How many ids are remembered.
pub const SENT_CAPACITY: usize = 4096;

/// What the memory says about a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A new id: send it.
    New,
    /// This id was sent with this content; its ack has not come (yet): do
    /// not send it again.
    InFlight,
    /// This id was sent with this content and the device answered this.
    Answered(TelecommandAck),
    /// This id was sent with another command (this one).
    Conflict(Command),
}

struct Entry {
    command: Command,
    ack: Option<TelecommandAck>,
}

/// The ids sent, oldest first.
#[derive(Default)]
pub struct Sent {
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
}

impl Sent {
    /// What is known about `id` with `command`.
    pub fn lookup(&self, id: &str, command: Command) -> Seen {
        match self.entries.get(id) {
            None => Seen::New,
            Some(entry) if entry.command != command => Seen::Conflict(entry.command),
            Some(Entry { ack: None, .. }) => Seen::InFlight,
            Some(Entry { ack: Some(ack), .. }) => Seen::Answered(ack.clone()),
        }
    }

    /// Remembers that `id` with `command` was handed to the device.
    pub fn mark_sent(&mut self, id: &str, command: Command) {
        if self.entries.contains_key(id) {
            return;
        }
        self.entries
            .insert(id.to_owned(), Entry { command, ack: None });
        self.order.push_back(id.to_owned());
        while self.order.len() > SENT_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Records the device's ack; `false` when the id was never sent (or
    /// forgotten).
    pub fn answer(&mut self, ack: &TelecommandAck) -> bool {
        match self.entries.get_mut(&ack.id) {
            Some(entry) => {
                if entry.ack.is_none() {
                    entry.ack = Some(ack.clone());
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: &str) -> TelecommandAck {
        TelecommandAck {
            id: id.into(),
            accepted: true,
            reason: None,
        }
    }

    #[test]
    fn an_id_is_sent_once_and_keeps_its_content() {
        let mut sent = Sent::default();
        assert_eq!(sent.lookup("a", Command::Ping), Seen::New);
        sent.mark_sent("a", Command::Ping);
        assert_eq!(sent.lookup("a", Command::Ping), Seen::InFlight);
        assert_eq!(
            sent.lookup("a", Command::Reboot),
            Seen::Conflict(Command::Ping)
        );
        assert!(sent.answer(&ack("a")));
        assert_eq!(sent.lookup("a", Command::Ping), Seen::Answered(ack("a")));
        assert!(!sent.answer(&ack("b")));
    }

    #[test]
    fn memory_is_bounded() {
        let mut sent = Sent::default();
        for i in 0..SENT_CAPACITY + 10 {
            sent.mark_sent(&i.to_string(), Command::Ping);
        }
        assert_eq!(sent.entries.len(), SENT_CAPACITY);
        assert_eq!(sent.lookup("0", Command::Ping), Seen::New);
        assert_eq!(
            sent.lookup(&(SENT_CAPACITY + 9).to_string(), Command::Ping),
            Seen::InFlight
        );
    }
}
