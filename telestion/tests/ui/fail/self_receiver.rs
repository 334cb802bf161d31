use telestion::subscribe;

struct Sensor;

impl Sensor {
    #[subscribe("a.b")]
    async fn handler(&self) {}
}

#[telestion::service]
async fn main() {}
