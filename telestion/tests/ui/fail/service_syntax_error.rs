#[telestion::service]
async fn main(service: telestion::Service) {
    let name = service.name() +;
    let _ = name;
}
