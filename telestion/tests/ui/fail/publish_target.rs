use telestion::subscribe;

#[subscribe("a.b", publish = "c..d")]
async fn invalid(body: String) -> String {
    body
}

#[subscribe("a.c", publish = ["ok.subject", "out.*"])]
async fn wildcard(body: String) -> String {
    body
}

#[subscribe("a.d", publish_default = "x.y")]
async fn default_without_config(body: String) -> String {
    body
}

#[telestion::service]
async fn main() {}
