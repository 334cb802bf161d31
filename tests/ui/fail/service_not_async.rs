#[telestion::service]
fn main() {}
