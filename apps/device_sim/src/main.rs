//! `device_sim`: a simulated mission device for the example backend.
//!
//! It listens on TCP for the IO service and speaks the frames of
//! [`backend_protocol`]: it sends telemetry at a configurable rate, and
//! answers telecommands with acks. One connection at a time: a new
//! connection replaces the current one (a restarted IO service does not
//! have to wait until the device notices that the old one is gone).
//!
//! # Configuration (environment)
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `DEVICE_ADDR` | `127.0.0.1:0` | where the IO service connects; prints `listening on <addr>` on stdout |
//! | `CONTROL_ADDR` | `127.0.0.1:0` | the fault-injection control port; prints `control on <addr>` |
//! | `TELEMETRY_HZ` | `10` | telemetry frames per second, 1 to 1000 (`set_rate` changes it) |
//! | `BUFFER_FRAMES` | `100000` | unacknowledged frames kept for resending |
//!
//! It also prints `session <n>` (the random session of this run).
//!
//! # No frame lost across reconnects
//!
//! Every telemetry frame stays in a buffer until the IO service confirms
//! it stored it (a [`backend_protocol::TelemetryAck`]: every frame up to a
//! counter). On each connection the device first resends every frame still
//! in the buffer, in counter order, then the new ones. So frames produced
//! while nobody is connected, and frames the IO service received but did
//! not store (it was killed), are sent again; the IO service's message ids
//! (`raw-<session>-<counter>`) make the resent ones duplicates the stream
//! stores once. The counter keeps counting across connections; the session
//! changes only when the simulator restarts. When the buffer holds
//! `BUFFER_FRAMES` frames, the oldest is dropped for each new one and
//! counted (`dropped` in `stats`, and a line on stderr every 1000 drops).
//!
//! # Control port (fault injection)
//!
//! One command per line; each is answered with one line, `ok ...` or
//! `error ...` (try `printf 'stats\n' | nc 127.0.0.1 <port>`):
//!
//! | command | effect |
//! | --- | --- |
//! | `bad_checksum [n]` | sends `n` (default 1) extra telemetry frames with a wrong checksum |
//! | `truncated [n]` | sends `n` extra telemetry frames cut short (valid checksum over the short body) |
//! | `garbage` | sends a length prefix of 65535 bytes: the stream cannot be resynchronised, the IO service must drop the link and reconnect |
//! | `silence <seconds>` | produces no telemetry for that long (the counter does not advance) |
//! | `disconnect` | closes the current connection (frames are buffered until the IO service reconnects) |
//! | `fault on` / `fault off` | sets or clears the fault status flag; while set, `set_heater` is rejected |
//! | `rate <hz>` | sets the telemetry rate (1 to 1000) |
//! | `stats` | `ok session=.. next_counter=.. buffered=.. dropped=.. acked=.. connections=.. rate_hz=.. commands=.. received=..` (`commands`: telecommands run; `received`: telecommand frames received) |
//!
//! Injected bad frames are sent once, to the current connection, and never
//! resent; they do not use up a counter.
//!
//! # Telecommands
//!
//! `ping` and `reboot` are acknowledged (`reboot` sets the rebooted flag
//! for 20 frames); `set_rate` is acknowledged for 1 to 1000 Hz and changes
//! the rate, rejected otherwise; `set_heater` is acknowledged and switches
//! the heater (which warms the temperature by 10 °C and draws 2 A), or
//! rejected while the fault flag is set. The id is the command's
//! idempotency key: a command id seen before (one of the last 1024) with
//! the same command is answered with the same ack again without running it
//! twice; with another command it is rejected ("id already used for
//! another command") and not run.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend_protocol::{
    Command, Frame, STATUS_FAULT, STATUS_HEATER_ON, STATUS_REBOOTED, Telecommand, TelecommandAck,
    Telemetry, body_len, crc16, decode_body, encode_body, encode_frame,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Command ids remembered for answering a repeated command.
const SEEN_COMMANDS: usize = 1024;
/// Frames written per batch.
const BATCH: usize = 256;
/// Longest control line.
const MAX_CONTROL_LINE: usize = 256;

/// The device's state.
struct Sim {
    session: u32,
    next_counter: u32,
    rate_hz: u32,
    heater: bool,
    fault: bool,
    rebooted_frames: u32,
    /// Unacknowledged telemetry frames (counter, wire bytes), in counter
    /// order without gaps.
    buffer: VecDeque<(u32, Vec<u8>)>,
    buffer_cap: usize,
    dropped: u64,
    acked: Option<u32>,
    /// One-shot wire bytes for the current connection: injected faults and
    /// telecommand acks.
    outbox: VecDeque<Vec<u8>>,
    silence_until: Option<Instant>,
    connections: u64,
    /// Telecommand frames received.
    received: u64,
    /// Telecommands run (an id runs once).
    commands: u64,
    /// The last ids run, with their command and ack.
    seen: VecDeque<(String, Command, TelecommandAck)>,
}

struct Shared {
    sim: Mutex<Sim>,
    /// Something new to send.
    new_data: Notify,
    /// The rate or the silence changed.
    timing_changed: Notify,
    /// Incremented to end the current connection.
    generation: watch::Sender<u64>,
}

impl Shared {
    fn sim(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kick(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    // Every RandomState has new random keys.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms());
    hasher.finish() as u32
}

impl Sim {
    fn telemetry(&self, counter: u32) -> Telemetry {
        let x = f64::from(counter);
        let heater = if self.heater { 1.0 } else { 0.0 };
        let mut status = 0;
        if self.heater {
            status |= STATUS_HEATER_ON;
        }
        if self.fault {
            status |= STATUS_FAULT;
        }
        if self.rebooted_frames > 0 {
            status |= STATUS_REBOOTED;
        }
        Telemetry {
            session: self.session,
            counter,
            time_ms: now_ms(),
            temperature_c: (20.0 + 5.0 * (x / 50.0).sin() + 10.0 * heater) as f32,
            voltage_v: (28.0 + 0.5 * (x / 30.0).cos()) as f32,
            current_a: (1.2 + 2.0 * heater + 0.1 * (x / 7.0).sin()) as f32,
            status,
        }
    }

    /// Produces the next frame into the buffer.
    fn tick(&mut self) {
        let counter = self.next_counter;
        let frame = encode_frame(&Frame::Telemetry(self.telemetry(counter)));
        self.next_counter = self.next_counter.wrapping_add(1);
        self.rebooted_frames = self.rebooted_frames.saturating_sub(1);
        self.buffer.push_back((counter, frame));
        while self.buffer.len() > self.buffer_cap {
            self.buffer.pop_front();
            self.dropped += 1;
            if self.dropped % 1000 == 1 {
                eprintln!(
                    "device_sim: buffer full ({} frames): dropped {} frames so far",
                    self.buffer_cap, self.dropped
                );
            }
        }
    }

    fn ack_telemetry(&mut self, session: u32, counter: u32) {
        if session != self.session {
            return;
        }
        while self.buffer.front().is_some_and(|(c, _)| *c <= counter) {
            self.buffer.pop_front();
        }
        self.acked = Some(self.acked.map_or(counter, |a| a.max(counter)));
    }

    fn execute(&mut self, command: &Telecommand) -> TelecommandAck {
        self.received += 1;
        let rejected = |reason: &str| TelecommandAck {
            id: command.id.clone(),
            accepted: false,
            reason: Some(reason.to_owned()),
        };
        match self.seen.iter().find(|(id, _, _)| *id == command.id) {
            // The same command again: the same answer, not run again.
            Some((_, earlier, ack)) if *earlier == command.command => return ack.clone(),
            Some((_, earlier, _)) => {
                return rejected(&format!(
                    "id already used for another command ({earlier:?}); not run"
                ));
            }
            None => {}
        }
        self.commands += 1;
        let ack = match command.command {
            Command::SetHeater { .. } if self.fault => rejected("fault flag set: heater locked"),
            Command::SetHeater { on } => {
                self.heater = on;
                accepted(&command.id)
            }
            Command::SetRate { hz } if !(1..=1000).contains(&hz) => {
                rejected("rate must be 1 to 1000 Hz")
            }
            Command::SetRate { hz } => {
                self.rate_hz = hz;
                accepted(&command.id)
            }
            Command::Reboot => {
                self.rebooted_frames = 20;
                accepted(&command.id)
            }
            Command::Ping => accepted(&command.id),
        };
        self.seen
            .push_back((command.id.clone(), command.command, ack.clone()));
        if self.seen.len() > SEEN_COMMANDS {
            self.seen.pop_front();
        }
        ack
    }

    fn bad_frame(&self, truncated: bool) -> Vec<u8> {
        let mut body = encode_body(&Frame::Telemetry(self.telemetry(self.next_counter)));
        if truncated {
            body.truncate(17);
            let crc = crc16(&body);
            body.extend_from_slice(&crc.to_be_bytes());
        } else {
            let last = body.len() - 1;
            body[last] ^= 0x5A;
        }
        backend_protocol::with_length_prefix(&body)
    }

    fn stats(&self) -> String {
        format!(
            "ok session={} next_counter={} buffered={} dropped={} acked={} connections={} rate_hz={} commands={} received={}",
            self.session,
            self.next_counter,
            self.buffer.len(),
            self.dropped,
            self.acked.map_or("none".to_owned(), |a| a.to_string()),
            self.connections,
            self.rate_hz,
            self.commands,
            self.received,
        )
    }
}

fn accepted(id: &str) -> TelecommandAck {
    TelecommandAck {
        id: id.to_owned(),
        accepted: true,
        reason: None,
    }
}

/// Produces telemetry at the current rate.
async fn generate(shared: Arc<Shared>) {
    let mut next = Instant::now();
    loop {
        let (period, silent_until) = {
            let sim = shared.sim();
            (
                Duration::from_secs(1) / sim.rate_hz.max(1),
                sim.silence_until,
            )
        };
        if let Some(until) = silent_until {
            if Instant::now() < until {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shared.timing_changed.notified() => {}
                }
                next = Instant::now();
                continue;
            }
            shared.sim().silence_until = None;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shared.timing_changed.notified() => {
                next = Instant::now();
                continue;
            }
        }
        shared.sim().tick();
        shared.new_data.notify_one();
        next += period;
        // After a stall (a suspended process), do not burst to catch up.
        let now = Instant::now();
        if next + Duration::from_secs(1) < now {
            next = now;
        }
    }
}

/// Serves one connection until it fails, ends, or is replaced.
async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut generation = shared.generation.subscribe();
    let (mut reader, mut writer) = stream.into_split();
    let start = {
        let mut sim = shared.sim();
        sim.connections += 1;
        sim.outbox.clear();
        sim.buffer.front().map_or(sim.next_counter, |(c, _)| *c)
    };
    eprintln!("device_sim: connected to {peer}; resending from counter {start}");
    let write = async {
        let mut next_send = start;
        loop {
            let mut batch = Vec::new();
            {
                let mut sim = shared.sim();
                while let Some(bytes) = sim.outbox.pop_front() {
                    batch.extend_from_slice(&bytes);
                }
                let front = sim.buffer.front().map(|(c, _)| *c);
                if let Some(front) = front {
                    // Frames may have been dropped below `next_send`.
                    let skip = next_send.wrapping_sub(front) as usize;
                    let skip = if skip > sim.buffer.len() { 0 } else { skip };
                    for (counter, bytes) in sim.buffer.iter().skip(skip).take(BATCH) {
                        batch.extend_from_slice(bytes);
                        next_send = counter.wrapping_add(1);
                    }
                }
            }
            if batch.is_empty() {
                // The timeout covers a wake-up taken by a connection that
                // was just replaced.
                let _ =
                    tokio::time::timeout(Duration::from_millis(100), shared.new_data.notified())
                        .await;
                continue;
            }
            if let Err(e) = writer.write_all(&batch).await {
                return format!("write failed: {e}");
            }
        }
    };
    let read = async {
        loop {
            let mut prefix = [0u8; 2];
            if let Err(e) = reader.read_exact(&mut prefix).await {
                return format!("closed by the peer ({e})");
            }
            let len = match body_len(prefix) {
                Ok(len) => len,
                Err(e) => return format!("unreadable stream: {e}"),
            };
            let mut body = vec![0; len];
            if let Err(e) = reader.read_exact(&mut body).await {
                return format!("closed by the peer ({e})");
            }
            match decode_body(&body) {
                Ok(Frame::TelemetryAck(ack)) => {
                    shared.sim().ack_telemetry(ack.session, ack.counter)
                }
                Ok(Frame::Telecommand(command)) => {
                    let ack = shared.sim().execute(&command);
                    eprintln!(
                        "device_sim: telecommand {} {:?}: {}",
                        command.id,
                        command.command,
                        if ack.accepted {
                            "acknowledged"
                        } else {
                            "rejected"
                        }
                    );
                    if matches!(command.command, Command::SetRate { .. }) && ack.accepted {
                        shared.timing_changed.notify_one();
                    }
                    shared
                        .sim()
                        .outbox
                        .push_back(encode_frame(&Frame::TelecommandAck(ack)));
                    shared.new_data.notify_one();
                }
                Ok(other) => eprintln!("device_sim: ignored unexpected frame {other:?}"),
                Err(e) => eprintln!("device_sim: ignored bad frame: {e}"),
            }
        }
    };
    let reason = tokio::select! {
        reason = write => reason,
        reason = read => reason,
        _ = generation.changed() => "disconnected".to_owned(),
    };
    eprintln!("device_sim: connection to {peer} ended: {reason}");
}

/// Runs one control command.
fn control(shared: &Shared, line: &str) -> String {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let arg = words.next();
    let count = || -> Result<u32, String> {
        match arg {
            None => Ok(1),
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| format!("error count must be 1 to 10000, not {n:?}")),
        }
    };
    let reply = match command {
        "bad_checksum" | "truncated" => {
            let n = match count() {
                Ok(n) => n,
                Err(e) => return e,
            };
            let mut sim = shared.sim();
            for _ in 0..n {
                let frame = sim.bad_frame(command == "truncated");
                sim.outbox.push_back(frame);
            }
            format!("ok {n} {command} frames queued")
        }
        "garbage" => {
            shared.sim().outbox.push_back(vec![0xff, 0xff, 0, 0]);
            "ok garbage queued".to_owned()
        }
        "silence" => match arg.and_then(|s| s.parse::<f64>().ok()) {
            Some(secs) if (0.0..=3600.0).contains(&secs) => {
                shared.sim().silence_until = Some(Instant::now() + Duration::from_secs_f64(secs));
                shared.timing_changed.notify_one();
                format!("ok silent for {secs} s")
            }
            _ => "error silence needs seconds (0 to 3600)".to_owned(),
        },
        "disconnect" => {
            shared.kick();
            "ok disconnected".to_owned()
        }
        "fault" => match arg {
            Some("on") => {
                shared.sim().fault = true;
                "ok fault on".to_owned()
            }
            Some("off") => {
                shared.sim().fault = false;
                "ok fault off".to_owned()
            }
            _ => "error fault needs on or off".to_owned(),
        },
        "rate" => match arg.and_then(|s| s.parse::<u32>().ok()) {
            Some(hz) if (1..=1000).contains(&hz) => {
                shared.sim().rate_hz = hz;
                shared.timing_changed.notify_one();
                format!("ok rate {hz} Hz")
            }
            _ => "error rate needs 1 to 1000".to_owned(),
        },
        "stats" => shared.sim().stats(),
        "" => "error empty command".to_owned(),
        other => format!("error unknown command {other:?}"),
    };
    shared.new_data.notify_one();
    reply
}

async fn serve_control(shared: Arc<Shared>, stream: TcpStream) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader.take(1 << 20));
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_CONTROL_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if line.len() > MAX_CONTROL_LINE {
            "error line too long".to_owned()
        } else {
            control(&shared, String::from_utf8_lossy(&line).trim())
        };
        if writer
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
            || line.len() > MAX_CONTROL_LINE
        {
            return;
        }
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn parse_env<T: std::str::FromStr>(key: &str, default: &str, ok: impl Fn(&T) -> bool) -> T {
    let text = env_or(key, default);
    match text.trim().parse::<T>() {
        Ok(value) if ok(&value) => value,
        _ => {
            eprintln!("error: {key}={text:?} is not a valid value");
            std::process::exit(1);
        }
    }
}

async fn bind(key: &str) -> TcpListener {
    let addr = env_or(key, "127.0.0.1:0");
    match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {key}={addr}: {e}");
            std::process::exit(1);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rate_hz: u32 = parse_env("TELEMETRY_HZ", "10", |hz| (1..=1000).contains(hz));
    let buffer_cap: usize = parse_env("BUFFER_FRAMES", "100000", |n| *n >= 1);
    let device = bind("DEVICE_ADDR").await;
    let control_listener = bind("CONTROL_ADDR").await;
    let session = random_u32();
    let shared = Arc::new(Shared {
        sim: Mutex::new(Sim {
            session,
            next_counter: 0,
            rate_hz,
            heater: false,
            fault: false,
            rebooted_frames: 0,
            buffer: VecDeque::new(),
            buffer_cap,
            dropped: 0,
            acked: None,
            outbox: VecDeque::new(),
            silence_until: None,
            connections: 0,
            received: 0,
            commands: 0,
            seen: VecDeque::new(),
        }),
        new_data: Notify::new(),
        timing_changed: Notify::new(),
        generation: watch::Sender::new(0),
    });
    let address = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    println!("listening on {}", address(&device));
    println!("control on {}", address(&control_listener));
    println!("session {session}");

    tokio::spawn(generate(shared.clone()));
    let control_shared = shared.clone();
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = control_listener.accept().await {
                tokio::spawn(serve_control(control_shared.clone(), stream));
            }
        }
    });
    let accept = async {
        loop {
            match device.accept().await {
                Ok((stream, peer)) => {
                    // The newest connection wins.
                    shared.kick();
                    tokio::spawn(serve(shared.clone(), stream, peer));
                }
                Err(e) => {
                    eprintln!("device_sim: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("error: cannot handle SIGTERM: {e}");
            std::process::exit(1);
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("device_sim: stopped; {}", shared.sim().stats());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(buffer_cap: usize) -> Sim {
        Sim {
            session: 9,
            next_counter: 0,
            rate_hz: 10,
            heater: false,
            fault: false,
            rebooted_frames: 0,
            buffer: VecDeque::new(),
            buffer_cap,
            dropped: 0,
            acked: None,
            outbox: VecDeque::new(),
            silence_until: None,
            connections: 0,
            received: 0,
            commands: 0,
            seen: VecDeque::new(),
        }
    }

    fn command(id: &str, command: Command) -> Telecommand {
        Telecommand {
            id: id.into(),
            command,
        }
    }

    #[test]
    fn frames_stay_buffered_until_acknowledged() {
        let mut sim = sim(100);
        for _ in 0..10 {
            sim.tick();
        }
        assert_eq!(sim.buffer.len(), 10);
        let (counter, wire) = &sim.buffer[3];
        assert_eq!(*counter, 3);
        match decode_body(&wire[2..]) {
            Ok(Frame::Telemetry(t)) => assert_eq!((t.session, t.counter), (9, 3)),
            other => panic!("{other:?}"),
        }
        sim.ack_telemetry(8, 5); // another session: ignored
        assert_eq!(sim.buffer.len(), 10);
        sim.ack_telemetry(9, 5);
        assert_eq!(sim.buffer.front().unwrap().0, 6);
        assert_eq!(sim.acked, Some(5));
        sim.ack_telemetry(9, 2); // an old ack changes nothing
        assert_eq!((sim.buffer.len(), sim.acked), (4, Some(5)));
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts() {
        let mut sim = sim(5);
        for _ in 0..8 {
            sim.tick();
        }
        assert_eq!(sim.dropped, 3);
        let counters: Vec<u32> = sim.buffer.iter().map(|(c, _)| *c).collect();
        assert_eq!(counters, [3, 4, 5, 6, 7]);
        assert!(sim.stats().contains("dropped=3"), "{}", sim.stats());
    }

    #[test]
    fn commands_are_run_once_and_rejected_on_fault() {
        let mut sim = sim(5);
        let ack = sim.execute(&command("a", Command::SetRate { hz: 100 }));
        assert!(ack.accepted);
        assert_eq!(sim.rate_hz, 100);
        // A repeated id gets the same ack without running again.
        sim.rate_hz = 7;
        assert_eq!(
            sim.execute(&command("a", Command::SetRate { hz: 100 })),
            ack
        );
        assert_eq!((sim.rate_hz, sim.commands, sim.received), (7, 1, 2));
        // The same id with another command: rejected, not run.
        let reused = sim.execute(&command("a", Command::SetRate { hz: 5 }));
        assert!(!reused.accepted);
        assert!(reused.reason.unwrap().contains("already used"));
        assert_eq!((sim.rate_hz, sim.commands, sim.received), (7, 1, 3));
        assert!(
            !sim.execute(&command("b", Command::SetRate { hz: 0 }))
                .accepted
        );
        sim.fault = true;
        let rejected = sim.execute(&command("c", Command::SetHeater { on: true }));
        assert!(!rejected.accepted);
        assert!(rejected.reason.unwrap().contains("fault"));
        sim.fault = false;
        assert!(
            sim.execute(&command("d", Command::SetHeater { on: true }))
                .accepted
        );
        assert_ne!(sim.telemetry(0).status & STATUS_HEATER_ON, 0);
        assert!(sim.execute(&command("e", Command::Reboot)).accepted);
        assert_ne!(sim.telemetry(0).status & STATUS_REBOOTED, 0);
    }

    #[test]
    fn injected_frames_fail_to_decode_as_documented() {
        let sim = sim(5);
        let bad = sim.bad_frame(false);
        assert!(matches!(
            decode_body(&bad[2..]),
            Err(backend_protocol::DecodeError::BadChecksum { .. })
        ));
        let short = sim.bad_frame(true);
        assert!(matches!(
            decode_body(&short[2..]),
            Err(backend_protocol::DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn control_commands_answer_ok_or_error() {
        let shared = Shared {
            sim: Mutex::new(sim(5)),
            new_data: Notify::new(),
            timing_changed: Notify::new(),
            generation: watch::Sender::new(0),
        };
        assert!(control(&shared, "bad_checksum 2").starts_with("ok"));
        assert!(control(&shared, "truncated").starts_with("ok"));
        assert!(control(&shared, "garbage").starts_with("ok"));
        assert_eq!(shared.sim().outbox.len(), 4);
        assert!(control(&shared, "fault on").starts_with("ok"));
        assert!(shared.sim().fault);
        assert!(control(&shared, "rate 1000").starts_with("ok"));
        assert_eq!(shared.sim().rate_hz, 1000);
        assert!(control(&shared, "silence 1.5").starts_with("ok"));
        assert!(shared.sim().silence_until.is_some());
        assert!(control(&shared, "disconnect").starts_with("ok"));
        assert_eq!(*shared.generation.borrow(), 1);
        assert!(control(&shared, "stats").starts_with("ok session=9 "));
        for bad in [
            "",
            "nope",
            "rate 0",
            "rate 1001",
            "rate x",
            "silence -1",
            "silence 1e9",
            "silence NaN",
            "fault maybe",
            "bad_checksum 0",
            "truncated 99999999999",
            "bad_checksum -3",
        ] {
            let reply = control(&shared, bad);
            assert!(reply.starts_with("error"), "{bad:?}: {reply}");
        }
    }
}
