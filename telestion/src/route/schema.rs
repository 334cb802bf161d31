//! Payload schemas: the JSON schema a route knows for the message its
//! handler takes and for the value it returns. Routes carry them; the
//! AsyncAPI document (`asyncapi`) prints them.

/// The JSON schema of a message payload, when the crate feature `schemas`
/// is on and the payload type derives `schemars::JsonSchema`. Made by
/// `#[subscribe]` (or `Route::message_schema` and `Route::reply_schema`
/// by hand, with the feature).
#[derive(Clone, Copy)]
pub struct PayloadSchema {
    #[cfg(feature = "schemas")]
    pub(crate) generate: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    #[cfg(not(feature = "schemas"))]
    pub(crate) _never: core::convert::Infallible,
}

impl std::fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadSchema")
    }
}

#[cfg(feature = "schemas")]
impl PayloadSchema {
    /// The schema of `T`.
    pub fn of<T: schemars::JsonSchema>() -> PayloadSchema {
        PayloadSchema {
            generate: |generator| generator.subschema_for::<T>(),
        }
    }
}

/// What a route's document entry knows about its payloads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RouteSchemas {
    /// The schema of the message the handler takes.
    pub(crate) message: Option<PayloadSchema>,
    /// The schema of the handler's return value.
    pub(crate) reply: Option<PayloadSchema>,
    /// Whether the handler returns something (`None`: not known).
    pub(crate) replies: Option<bool>,
}
