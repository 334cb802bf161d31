use telestion::subscribe;

#[subscribe("a.b", default = "c.d")]
async fn literal_and_default(body: String) {}

#[subscribe(config = "KEY", default = "c..d")]
async fn invalid_default(body: String) {}

#[subscribe(config = "KEY", default = 3)]
async fn default_not_a_string(body: String) {}

fn main() {}
