use telestion::{Subject, subscribe};

#[subscribe("a.b")]
async fn handler(subject: Subject, count: u32) {
    let _ = (subject, count);
}

#[telestion::service]
async fn main() {}
