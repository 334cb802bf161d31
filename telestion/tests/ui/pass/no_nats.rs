//! `nats = false`, and a `main` without parameters.
#[telestion::service(nats = false)]
async fn main() {
    // A service without NATS would run until SIGTERM; this one has no
    // handle, so it stops through the process: exit before serving.
    std::process::exit(0);
}
