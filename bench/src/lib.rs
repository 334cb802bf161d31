//! What the benchmark's two services share: the work each handler does, so
//! that the framework and the hand-written async-nats twin do exactly the
//! same thing per message.

pub mod work;
