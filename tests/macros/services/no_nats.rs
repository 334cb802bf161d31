//! `nats = false`: start-up code runs with config and data dir, without a
//! NATS connection; it writes a file and shuts the service down.
#[telestion::service(nats = false)]
async fn main(service: telestion::Service) -> Result<(), Box<dyn std::error::Error>> {
    let dir = service.data_dir()?;
    let connected = service.client().is_some();
    std::fs::write(
        dir.join("started"),
        format!("{} connected={connected}", service.name()),
    )?;
    service.shutdown();
    Ok(())
}
