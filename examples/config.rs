//! Sample: reads configuration without connecting to NATS.
//!
//! A port of Telestion's Deno `config` sample. It prints the standard keys
//! and the custom key `MY_STRING` (required), then exits. It also reads the
//! optional key `MY_NUMBER` through a typed config struct, so a value that
//! is not a number fails the start with a message naming the key:
//!
//! ```sh
//! SERVICE_NAME=config DATA_DIR=./data NATS_URL=localhost:4222 MY_STRING=hello \
//!     cargo run --example config
//! # error: ... key MY_NUMBER ...
//! MY_STRING=hello MY_NUMBER=abc cargo run --example config -- --dev
//! ```

use telestion::Service;

/// The custom keys, decoded and checked at start (field `my_string` reads
/// the key `MY_STRING`).
#[derive(Debug, serde::Deserialize)]
struct Custom {
    /// Required.
    my_string: String,
    /// Optional; must be a number when given.
    my_number: Option<f64>,
}

#[telestion::service(nats = false)]
async fn main(service: Service) -> Result<(), telestion::ConfigError> {
    let custom = service.typed_config::<Custom>()?;
    let config = service.config();
    println!("Standard configuration:");
    for key in ["NATS_URL", "NATS_USER", "SERVICE_NAME", "DATA_DIR"] {
        println!("  {key} = {}", config.get_str(key).unwrap_or_default());
    }
    let password_set = config
        .get_str("NATS_PASSWORD")
        .is_some_and(|p| !p.is_empty());
    println!(
        "  NATS_PASSWORD = {}",
        if password_set { "[redacted]" } else { "" }
    );
    println!("  SERVICE_ID = {}", service.id());
    println!("Custom configuration:");
    println!("  MY_STRING = {}", custom.my_string);
    match custom.my_number {
        Some(number) => println!("  MY_NUMBER = {number}"),
        None => println!("  MY_NUMBER is not set"),
    }
    // This sample only shows its configuration; stop right after start-up.
    service.shutdown();
    Ok(())
}
