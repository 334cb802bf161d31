//! A device that sends garbage: the IO service neither panics nor stops;
//! it drops each connection whose stream cannot be framed (counted in
//! health), forwards well-framed bad bodies for the parser to reject, and
//! still handles a good frame afterwards (stored, parsed, acknowledged to
//! the device).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use backend_protocol::{Frame, Telemetry, TelemetryAck, decode_body, encode_frame};
use backend_tests::Backend;
use futures::StreamExt;
use telestion_test::{WAIT, eventually_async};

mod support;
use support::errors_total;

/// A small deterministic generator (xorshift), so a failure repeats.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The next connection of the IO service, within [`WAIT`].
fn accept(listener: &TcpListener) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(WAIT)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the IO service did not connect");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_device_is_survived() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let env = vec![("io_service", "LINK_BACKOFF_MAX".into(), "200ms".into())];
    let mut backend = Backend::start_with(10, &[], env);
    backend.device_addr = listener.local_addr().unwrap().to_string();
    backend.start_service("io_service");
    backend.start_service("telemetry_parser");
    let client = backend.server.client().await;
    let mut rejected = client.subscribe("telemetry.rejected").await.unwrap();
    client.flush().await.unwrap();

    // Connections with random bytes, and with well-framed random bodies.
    let io_errors = errors_total(&client, "io_service").await;
    let mut random = Random(0x5EED_1234_ABCD_0001);
    let garbage = tokio::task::spawn_blocking(move || {
        let mut framed = 0;
        for round in 0..12 {
            let mut stream = accept(&listener);
            if round % 2 == 0 {
                let n = 1 + (random.next() % 4096) as usize;
                let _ = stream.write_all(&random.bytes(n));
            } else {
                for _ in 0..20 {
                    let len = 3 + (random.next() % 200) as usize;
                    let mut frame = (len as u16).to_be_bytes().to_vec();
                    frame.extend(random.bytes(len));
                    let _ = stream.write_all(&frame);
                    framed += 1;
                }
                // Then a prefix announcing more than a frame may have.
                let _ = stream.write_all(&[0xff, 0xff]);
            }
            // The IO service closes the link (at the latest at our end of
            // stream); wait for it.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
        }
        (listener, framed)
    });
    let (listener, framed) = tokio::time::timeout(Duration::from_secs(60), garbage)
        .await
        .expect("the IO service stopped reconnecting")
        .unwrap();

    // Every well-framed bad body reached the parser and was rejected.
    let mut reasons = 0;
    while reasons < framed {
        telestion_test::next_message(&mut rejected, Duration::from_secs(10)).await;
        reasons += 1;
    }
    assert!(backend.service("io_service").is_running());
    assert!(backend.service("telemetry_parser").is_running());
    // Each dropped connection is counted.
    assert!(errors_total(&client, "io_service").await >= io_errors + 12);

    // A good frame is still handled end to end.
    let good = Telemetry {
        session: 77,
        counter: 5,
        time_ms: 1,
        temperature_c: 1.5,
        voltage_v: 2.5,
        current_a: 0.5,
        status: 0,
    };
    let ack = tokio::task::spawn_blocking(move || {
        let mut stream = accept(&listener);
        stream
            .write_all(&encode_frame(&Frame::Telemetry(good)))
            .unwrap();
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).unwrap();
        let mut body = vec![0; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut body).unwrap();
        decode_body(&body).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        ack,
        Frame::TelemetryAck(TelemetryAck {
            session: 77,
            counter: 5
        })
    );
    let js = jetstream::new(client.clone());
    eventually_async(Duration::from_secs(10), "the good frame parsed", || async {
        let Ok(stream) = js.get_stream("TELEMETRY").await else {
            return false;
        };
        let Ok(consumer) = stream
            .create_consumer(jetstream::consumer::pull::Config {
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
        else {
            return false;
        };
        let mut messages = consumer.fetch().max_messages(10).messages().await.unwrap();
        while let Some(Ok(message)) = messages.next().await {
            if message.payload.as_ref()
                == br#"{"session":77,"counter":5,"time_ms":1,"temperature_c":1.5,"voltage_v":2.5,"current_a":0.5,"status":0}"#
            {
                return true;
            }
        }
        false
    })
    .await;
}
