use telestion::subscribe;

#[subscribe(every = "soon")]
async fn bad_period() {}

#[subscribe("a.b", every = "1s")]
async fn subject_and_timer() {}

#[subscribe(every = "1s", concurrency = 2)]
async fn concurrent_timer() {}

#[subscribe(every_default = "1s")]
async fn default_without_config() {}

#[subscribe("a.c", task)]
async fn task_with_subject() {}

#[telestion::service]
async fn main() {}
