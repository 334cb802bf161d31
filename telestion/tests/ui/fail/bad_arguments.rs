use telestion::subscribe;

#[subscribe("a.b", broadcast)]
async fn flag() {}

#[subscribe("a.b", concurency = 2)]
async fn misspelled() {}

#[subscribe("a.b", queue = false, queue = "workers")]
async fn duplicated() {}

#[subscribe("a.b", concurrency = 0)]
async fn zero() {}

#[subscribe("a.b", config = "INPUT_SUBJECT")]
async fn both() {}

#[subscribe(queue = false)]
async fn neither() {}

#[subscribe(SUBJECT)]
async fn not_a_literal() {}

#[telestion::service]
async fn main() {}
