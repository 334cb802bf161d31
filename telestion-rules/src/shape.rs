//! Which route settings go together. A route is a message handler (on a
//! subject, core or durable, one message or a batch per call), a timer or a
//! task; the settings of one kind do not apply to another. `#[subscribe]`
//! checks its arguments with [`Shape::misuses`] at compile time (pointing at
//! the argument), and the runtime checks a hand-built route the same way
//! when it is subscribed.

/// The settings a route was given, as far as the rules care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// A subject (a literal, or a config key).
    pub subject: bool,
    /// A timer period (`every`, `every_config`).
    pub timer: bool,
    /// A task.
    pub task: bool,
    /// Durable (a JetStream consumer).
    pub durable: bool,
    /// A stream named for it.
    pub stream: bool,
    /// A queue group chosen explicitly.
    pub queue: bool,
    /// A concurrency chosen explicitly.
    pub concurrency: Option<usize>,
    /// A batch size.
    pub batch: bool,
    /// A batch window.
    pub batch_window: bool,
    /// Whether the handler takes a `Batch<T>` (unknown to the macro).
    pub takes_batch: Option<bool>,
}

/// A setting that does not fit the route; [`Misuse::setting`] names it,
/// `Display` says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// `queue` on a durable route.
    QueueOnDurable,
    /// `stream` without `durable`.
    StreamWithoutDurable,
    /// A batch window without a batch size.
    WindowWithoutBatch,
    /// A batch on a timer or task.
    BatchOnTimerOrTask,
    /// A batch with concurrency above 1.
    BatchWithConcurrency,
    /// A task with a subject, timer, queue, concurrency or durable.
    TaskWithMore,
    /// A timer with a subject.
    TimerWithSubject,
    /// A timer with a queue, concurrency or durable.
    TimerWithMore,
    /// A message handler without a subject.
    NoSubject,
    /// A handler taking `Batch<T>` on a route without a batch size.
    BatchParameterWithoutBatch,
    /// A batch route whose handler takes no `Batch<T>`.
    BatchWithoutBatchParameter,
}

impl Misuse {
    /// The setting the misuse is about (the `#[subscribe]` argument to
    /// point at).
    pub fn setting(self) -> &'static str {
        match self {
            Misuse::QueueOnDurable => "queue",
            Misuse::StreamWithoutDurable => "stream",
            Misuse::WindowWithoutBatch => "batch_window",
            Misuse::BatchOnTimerOrTask | Misuse::BatchWithConcurrency => "batch",
            Misuse::TaskWithMore => "task",
            Misuse::TimerWithSubject | Misuse::TimerWithMore => "every",
            Misuse::NoSubject => "subject",
            Misuse::BatchParameterWithoutBatch | Misuse::BatchWithoutBatchParameter => "batch",
        }
    }
}

impl std::fmt::Display for Misuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Misuse::QueueOnDurable => {
                "`queue` does not apply to a durable handler: every instance shares its durable \
                 consumer, so each message reaches one of them; remove `queue`"
            }
            Misuse::StreamWithoutDurable => {
                "`stream` names the JetStream stream of a durable handler; add `durable` \
                 (`#[subscribe(\"cmd.>\", durable, stream = \"COMMANDS\")]`) or remove `stream`"
            }
            Misuse::WindowWithoutBatch => {
                "`batch_window` is how long a batch waits for more messages; add `batch = N` \
                 (`#[subscribe(\"a.b\", batch = 100, batch_window = \"50ms\")]`) or remove \
                 `batch_window`"
            }
            Misuse::BatchOnTimerOrTask => {
                "timers and tasks are not called per message, so they take no batch; remove \
                 `batch`"
            }
            Misuse::BatchWithConcurrency => {
                "a batch handler handles one batch at a time; remove `concurrency` (a larger \
                 `batch` handles more at once)"
            }
            Misuse::TaskWithMore => {
                "a task runs once after start, not per message or periodically; remove the \
                 subject, `every`, `queue`, `concurrency` and `durable`, or remove `task`"
            }
            Misuse::TimerWithSubject => {
                "a timer (`every`) is called periodically, not per message; remove the subject \
                 (or `config`), or remove `every` for a message handler"
            }
            Misuse::TimerWithMore => {
                "a timer (`every`) takes no `queue`, `concurrency` or `durable`; its calls never \
                 overlap; remove them"
            }
            Misuse::NoSubject => {
                "missing subject; write `#[subscribe(\"sensors.temperature\")]`, or \
                 `#[subscribe(config = \"KEY\")]` to read the subject from config"
            }
            Misuse::BatchParameterWithoutBatch => {
                "it takes `Batch<T>`, but its route has no batch size; add `batch = N` to \
                 `#[subscribe]` (by hand: `Route::batch(n, window)`)"
            }
            Misuse::BatchWithoutBatchParameter => {
                "its route is a batch route (`batch = N`), but it takes no `Batch<T>` \
                 parameter; take the messages as `Batch<Json<T>>` (or `Batch<Bytes>`, ...)"
            }
        })
    }
}

impl Shape {
    /// Every setting that does not fit, in the order a reader meets them.
    ///
    /// ```
    /// use telestion_rules::shape::{Misuse, Shape};
    ///
    /// let timer = Shape { timer: true, queue: true, ..Shape::default() };
    /// assert_eq!(timer.misuses(), [Misuse::TimerWithMore]);
    /// let handler = Shape { subject: true, durable: true, ..Shape::default() };
    /// assert!(handler.misuses().is_empty());
    /// ```
    pub fn misuses(&self) -> Vec<Misuse> {
        let mut found = Vec::new();
        let timer_or_task = self.timer || self.task;
        let extras = self.queue || self.concurrency.is_some() || self.durable;
        if self.durable && self.queue {
            found.push(Misuse::QueueOnDurable);
        }
        if self.stream && !self.durable {
            found.push(Misuse::StreamWithoutDurable);
        }
        if self.batch_window && !self.batch {
            found.push(Misuse::WindowWithoutBatch);
        }
        if self.batch && timer_or_task {
            found.push(Misuse::BatchOnTimerOrTask);
        } else if self.batch && self.concurrency.is_some_and(|n| n > 1) {
            found.push(Misuse::BatchWithConcurrency);
        }
        if self.task && (self.subject || self.timer || extras) {
            found.push(Misuse::TaskWithMore);
        } else if self.timer {
            if self.subject {
                found.push(Misuse::TimerWithSubject);
            }
            if extras {
                found.push(Misuse::TimerWithMore);
            }
        } else if !self.task && !self.subject {
            found.push(Misuse::NoSubject);
        }
        if !timer_or_task {
            match (self.takes_batch, self.batch) {
                (Some(true), false) => found.push(Misuse::BatchParameterWithoutBatch),
                (Some(false), true) => found.push(Misuse::BatchWithoutBatchParameter),
                _ => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler() -> Shape {
        Shape {
            subject: true,
            ..Shape::default()
        }
    }

    #[test]
    fn plain_kinds_are_fine() {
        assert!(handler().misuses().is_empty());
        let task = Shape {
            task: true,
            ..Shape::default()
        };
        assert!(task.misuses().is_empty());
        let batch = Shape {
            batch: true,
            batch_window: true,
            durable: true,
            stream: true,
            takes_batch: Some(true),
            ..handler()
        };
        assert!(batch.misuses().is_empty());
    }

    #[test]
    fn misfits() {
        let cases = [
            (
                Shape {
                    durable: true,
                    queue: true,
                    ..handler()
                },
                Misuse::QueueOnDurable,
            ),
            (
                Shape {
                    stream: true,
                    ..handler()
                },
                Misuse::StreamWithoutDurable,
            ),
            (
                Shape {
                    batch_window: true,
                    ..handler()
                },
                Misuse::WindowWithoutBatch,
            ),
            (
                Shape {
                    batch: true,
                    concurrency: Some(4),
                    ..handler()
                },
                Misuse::BatchWithConcurrency,
            ),
            (
                Shape {
                    task: true,
                    subject: true,
                    ..Shape::default()
                },
                Misuse::TaskWithMore,
            ),
            (
                Shape {
                    timer: true,
                    subject: true,
                    ..Shape::default()
                },
                Misuse::TimerWithSubject,
            ),
            (
                Shape {
                    timer: true,
                    batch: true,
                    ..Shape::default()
                },
                Misuse::BatchOnTimerOrTask,
            ),
            (Shape::default(), Misuse::NoSubject),
            (
                Shape {
                    takes_batch: Some(true),
                    ..handler()
                },
                Misuse::BatchParameterWithoutBatch,
            ),
            (
                Shape {
                    batch: true,
                    takes_batch: Some(false),
                    ..handler()
                },
                Misuse::BatchWithoutBatchParameter,
            ),
        ];
        for (shape, misuse) in cases {
            assert!(
                shape.misuses().contains(&misuse),
                "{shape:?}: {:?}",
                shape.misuses()
            );
            assert!(!misuse.to_string().is_empty());
        }
    }
}
