#[telestion::service]
async fn main() -> u32 {
    1
}
