//! The asynchronous front of a [`DataLog`]: lines wait in one queue per
//! category, and one writer per category (a blocking thread, at most
//! [`DataLog::workers`] at once) takes everything queued and writes it with
//! one write. The queues are bounded: a caller whose category (or all
//! categories together) holds more than the budget waits until the writer
//! made room, which slows the subscription that feeds it.

use std::collections::HashMap;
use std::mem;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use telestion::Bytes;
use telestion::data_log::check_category;
use telestion::tokio;
use telestion::tokio::sync::{Notify, oneshot};

use crate::files::{DataLog, LogError, lock};
use crate::line::log_line;

/// Bytes of lines one category may hold queued (or being written) before
/// its callers wait for room.
pub const CATEGORY_BUDGET: usize = 8 << 20;
/// Bytes of lines all categories together may hold queued before callers
/// wait for room.
pub const TOTAL_BUDGET: usize = 32 << 20;

/// What becomes a line: the line itself, or a message that the writer
/// turns into its line (so that the formatting runs on the writer's
/// thread, not on the async workers).
pub(crate) enum Text {
    Line(String),
    Message {
        subject: String,
        body: Bytes,
        time: SystemTime,
    },
}

impl Text {
    /// Bytes it holds (what the budgets count).
    fn len(&self) -> usize {
        match self {
            Text::Line(line) => line.len(),
            Text::Message { subject, body, .. } => subject.len() + body.len() + 64,
        }
    }

    fn render(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Text::Line(line) => line.as_str().into(),
            Text::Message {
                subject,
                body,
                time,
            } => log_line(subject, body, *time).into(),
        }
    }
}

/// A line waiting for its writer.
struct Pending {
    line: Text,
    /// Refused (`LogError::Timeout`) when not written by then.
    deadline: Instant,
    /// Who waits for the outcome, if anyone.
    done: Option<oneshot::Sender<Result<(), LogError>>>,
}

/// One category's lines and whether its writer is at work.
#[derive(Default)]
struct Queue {
    lines: Vec<Pending>,
    /// Bytes queued or being written.
    bytes: usize,
}

#[derive(Default)]
struct State {
    /// Categories with lines queued or a writer at work; a category leaves
    /// when its writer finds its queue empty.
    queues: HashMap<String, Queue>,
    /// Bytes queued or being written, all categories.
    bytes: usize,
}

/// The queues of every category.
#[derive(Default)]
pub(crate) struct Queues {
    state: Mutex<State>,
    /// Woken whenever a writer finished a batch.
    room: Notify,
}

impl DataLog {
    /// Writes `line` to the file of `category` off the async workers; the
    /// future tells the outcome. The line is queued at once, when this is
    /// called (so lines of one category are written in the order of the
    /// calls), and written by the category's one writer, which takes every
    /// line queued and writes them with one write; other categories go on
    /// meanwhile. A line that cannot be written within `LOCK_TIMEOUT` (lock
    /// held elsewhere, slow disk) is refused. When the caller stops
    /// waiting, the line is still written. This call does not wait for
    /// room in the queues: see [`DataLog::wait_for_room`].
    pub fn write(
        &self,
        category: &str,
        line: String,
    ) -> impl Future<Output = Result<(), LogError>> + Send + 'static {
        let queued = check_category(category).map(|()| {
            let (done, outcome) = oneshot::channel();
            self.push(category, Text::Line(line), Some(done));
            outcome
        });
        let path = self.file_path(category);
        async move {
            queued?.await.unwrap_or_else(|_| {
                Err(LogError::Interrupted {
                    path,
                    reason: "the writer stopped".into(),
                })
            })
        }
    }

    /// Queues the line of a message (see [`log_line`]: `subject`, `body`,
    /// received at `time`) for the file of `category` like
    /// [`DataLog::write`], without waiting for the outcome; the writer
    /// formats it. Returns once the line is queued and the queues are
    /// within their budget (8 MiB per category, 32 MiB in all), or after
    /// `LOCK_TIMEOUT` at most. A line that then fails is reported to the
    /// hook set with [`DataLog::on_failure`].
    pub async fn enqueue(
        &self,
        category: &str,
        subject: String,
        body: Bytes,
        time: SystemTime,
    ) -> Result<(), LogError> {
        check_category(category)?;
        let deadline = Instant::now() + self.lock_timeout();
        let message = Text::Message {
            subject,
            body,
            time,
        };
        if self.push(category, message, None) {
            self.wait_until(category, deadline).await;
        }
        Ok(())
    }

    /// Waits until the queues are within their budget (8 MiB of lines for
    /// `category`, 32 MiB in all), or `LOCK_TIMEOUT` at most: what a caller
    /// of [`DataLog::write`] does to slow down with the writer.
    pub async fn wait_for_room(&self, category: &str) {
        self.wait_until(category, Instant::now() + self.lock_timeout())
            .await;
    }

    /// Waits until every line queued so far is written (or refused), at
    /// most `limit`; `false` when lines were still queued then. What a
    /// service does before it exits, so that no queued line is lost.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = standard_ops::DataLog::new(dir.path());
    /// let written = log.write("temperature", "{\"value\":1}".into());
    /// assert!(log.flush(std::time::Duration::from_secs(5)).await);
    /// assert!(written.await.is_ok());
    /// # }
    /// ```
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let room = self.inner.queues.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if lock(&self.inner.queues.state).bytes == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), room)
                .await
                .is_err()
            {
                return lock(&self.inner.queues.state).bytes == 0;
            }
        }
    }

    async fn wait_until(&self, category: &str, deadline: Instant) {
        loop {
            let room = self.inner.queues.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !self.over_budget(category)
                || tokio::time::timeout_at(deadline.into(), room)
                    .await
                    .is_err()
            {
                return;
            }
        }
    }

    /// Sets what is told about lines queued with [`DataLog::enqueue`] that
    /// could not be written: the error and how many lines it refused (lines
    /// of one batch that fail together are reported once). Only the first
    /// hook set counts; `false` when one was set already.
    pub fn on_failure(&self, hook: impl Fn(&LogError, usize) + Send + Sync + 'static) -> bool {
        self.inner.on_failure.set(Box::new(hook)).is_ok()
    }

    /// Queues a line, starts the category's writer when none is at work;
    /// whether the queues are over budget now.
    fn push(
        &self,
        category: &str,
        line: Text,
        done: Option<oneshot::Sender<Result<(), LogError>>>,
    ) -> bool {
        let deadline = Instant::now() + self.lock_timeout();
        let len = line.len();
        let pending = Pending {
            line,
            deadline,
            done,
        };
        let (start, over) = {
            let mut state = lock(&self.inner.queues.state);
            state.bytes += len;
            let total = state.bytes;
            let (queue, start) = match state.queues.get_mut(category) {
                Some(queue) => (queue, false),
                None => (state.queues.entry(category.to_owned()).or_default(), true),
            };
            queue.lines.push(pending);
            queue.bytes += len;
            (start, queue.bytes > CATEGORY_BUDGET || total > TOTAL_BUDGET)
        };
        if start {
            self.start_writer(category.to_owned());
        }
        over
    }

    fn over_budget(&self, category: &str) -> bool {
        let state = lock(&self.inner.queues.state);
        state.bytes > TOTAL_BUDGET
            || state
                .queues
                .get(category)
                .is_some_and(|queue| queue.bytes > CATEGORY_BUDGET)
    }

    /// The writer of `category`: waits for a worker slot, then writes on a
    /// blocking thread until the queue is empty. Should it fail, what is
    /// left is refused, so nobody waits forever.
    fn start_writer(&self, category: String) {
        let log = self.clone();
        tokio::spawn(async move {
            let slots = log.inner.worker_slots.clone();
            let slot = slots.acquire_owned().await;
            let writer = log.clone();
            let name = category.clone();
            let job = tokio::task::spawn_blocking(move || {
                writer.drain(&name);
                drop(slot);
            });
            if let Err(e) = job.await {
                log.abandon(&category, &e.to_string());
            }
        });
    }

    /// Writes batches of `category` until its queue is empty, then removes
    /// the queue. A blocking call.
    fn drain(&self, category: &str) {
        let mut buffer = Vec::new();
        loop {
            let batch = {
                let mut state = lock(&self.inner.queues.state);
                let Some(queue) = state.queues.get_mut(category) else {
                    return;
                };
                if queue.lines.is_empty() {
                    state.queues.remove(category);
                    return;
                }
                mem::take(&mut queue.lines)
            };
            let bytes: usize = batch.iter().map(|p| p.line.len()).sum();
            let outcomes = self.write_batch(category, &batch, &mut buffer);
            {
                let mut state = lock(&self.inner.queues.state);
                state.bytes -= bytes;
                if let Some(queue) = state.queues.get_mut(category) {
                    queue.bytes -= bytes;
                }
            }
            self.inner.queues.room.notify_waiters();
            self.settle(batch, outcomes);
            // Large scratch space is not kept while idle.
            if buffer.capacity() > CATEGORY_BUDGET {
                buffer = Vec::new();
            }
        }
    }

    /// Writes `batch` in order, as few writes as the lock and the
    /// deadlines allow: a line whose deadline passes before its file could
    /// be locked is refused, the lines after it are tried again.
    fn write_batch(
        &self,
        category: &str,
        batch: &[Pending],
        buffer: &mut Vec<u8>,
    ) -> Vec<Option<LogError>> {
        let mut outcomes: Vec<Option<LogError>> = Vec::with_capacity(batch.len());
        let timeout = || LogError::Timeout {
            path: self.file_path(category),
            seconds: self.lock_timeout().as_secs_f64(),
        };
        while outcomes.len() < batch.len() {
            let now = Instant::now();
            let next = outcomes.len();
            if batch[next].deadline <= now {
                outcomes.push(Some(timeout()));
                continue;
            }
            let texts: Vec<_> = batch[next..].iter().map(|p| p.line.render()).collect();
            let lines: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
            let (written, error) =
                self.append_lines(category, &lines, batch[next].deadline, buffer);
            outcomes.extend((0..written).map(|_| None));
            match error {
                None => {}
                // The first line's deadline has passed: refused in the
                // next round, the rest tried again.
                Some(LogError::Timeout { .. }) => {}
                Some(error) => {
                    let rest = batch.len() - outcomes.len();
                    outcomes.extend((1..rest).map(|_| Some(error.duplicate())));
                    if rest > 0 {
                        outcomes.push(Some(error));
                    }
                }
            }
        }
        outcomes
    }

    /// Tells each waiting caller its outcome, and the failure hook about
    /// failed lines nobody waits for (once per error kind and batch).
    fn settle(&self, batch: Vec<Pending>, outcomes: Vec<Option<LogError>>) {
        let mut unreported: Option<(LogError, usize)> = None;
        for (pending, outcome) in batch.into_iter().zip(outcomes) {
            match (pending.done, outcome) {
                (Some(done), outcome) => {
                    let _ = done.send(outcome.map_or(Ok(()), Err));
                }
                (None, None) => {}
                (None, Some(error)) => match &mut unreported {
                    Some((_, n)) => *n += 1,
                    None => unreported = Some((error, 1)),
                },
            }
        }
        if let Some((error, n)) = unreported {
            self.report(&error, n);
        }
    }

    fn report(&self, error: &LogError, lines: usize) {
        match self.inner.on_failure.get() {
            Some(hook) => hook(error, lines),
            None => tracing::warn!(%error, lines, "lines not logged"),
        }
    }

    /// Refuses every line left of `category` after its writer failed.
    fn abandon(&self, category: &str, reason: &str) {
        let lines = {
            let mut state = lock(&self.inner.queues.state);
            let Some(queue) = state.queues.remove(category) else {
                return;
            };
            state.bytes -= queue.bytes;
            queue.lines
        };
        self.inner.queues.room.notify_waiters();
        let path = self.file_path(category);
        let error = || LogError::Interrupted {
            path: path.clone(),
            reason: format!("the writer failed: {reason}"),
        };
        let outcomes = lines.iter().map(|_| Some(error())).collect();
        self.settle(lines, outcomes);
    }
}
