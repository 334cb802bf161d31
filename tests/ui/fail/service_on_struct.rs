#[telestion::service]
struct Service;
