#[telestion::service(nats = "no", port = 4222)]
async fn main(service: telestion::Service, extra: u32) {
    let _ = (service, extra);
}
