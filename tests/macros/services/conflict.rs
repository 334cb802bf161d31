//! Two handlers on the same subject in the same queue group: each message
//! would reach only one of them, so the start must fail and name both.
use telestion::subscribe;

#[subscribe("e2e.conflict")]
async fn first() {}

mod other {
    #[telestion::subscribe("e2e.conflict")]
    async fn second() {}
}

/// Same subject, but broadcast: no conflict with either.
#[subscribe("e2e.conflict", queue = false)]
async fn listener() {}

#[telestion::service]
async fn main() {}
