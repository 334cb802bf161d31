use telestion::{Json, Subject, subscribe};

#[subscribe("a.b")]
async fn handler(Json(x): Json<u32>, subject: Subject, text: String) {
    let _ = (x, subject, text);
}

#[telestion::service]
async fn main() {}
