//! What generated code uses, and nothing else. Not a public API: may
//! change in any release.

use crate::handler::extract::FromMessage;
pub use crate::route::registry::{ROUTES, collected_routes};
pub use crate::run::{SetupResult, run};
pub use linkme;

// The paths generated code names (it names nothing outside `__private`
// and `::core`).
pub use crate::handler::batch::DEFAULT_BATCH_WINDOW_MS;
pub use crate::jetstream::settings::Durable;
pub use crate::route::Route;
pub use crate::route::publish_target::PublishTarget;
pub use crate::service::{Options, Service};

/// Used by `#[subscribe]`: the payload schemas and whether the handler
/// returns a value (for the AsyncAPI document).
pub fn with_schemas(
    route: crate::Route,
    params: &[Option<crate::PayloadSchema>],
    reply: Option<crate::PayloadSchema>,
    replies: bool,
) -> crate::Route {
    crate::route::asyncapi::with_schemas(route, params, reply, replies)
}

/// Used by `#[subscribe]`: `SchemaProbe::<T>::NEW.payload_schema()`
/// is the JSON schema of `U` when `T` is `Json<U>` (or a `Result` or
/// `Option` of it), the crate feature `schemas` is on and `U` derives
/// `schemars::JsonSchema`; otherwise, through [`NoSchema`], `None`.
pub struct SchemaProbe<T: ?Sized>(core::marker::PhantomData<T>);

impl<T: ?Sized> SchemaProbe<T> {
    /// The probe.
    pub const NEW: Self = SchemaProbe(core::marker::PhantomData);
}

#[cfg(feature = "schemas")]
impl<T: schemars::JsonSchema> SchemaProbe<crate::Json<T>> {
    /// The schema of `T`.
    pub fn payload_schema(&self) -> Option<crate::PayloadSchema> {
        Some(crate::PayloadSchema::of::<T>())
    }
}

#[cfg(feature = "schemas")]
impl<T: schemars::JsonSchema, E> SchemaProbe<Result<crate::Json<T>, E>> {
    /// The schema of `T`.
    pub fn payload_schema(&self) -> Option<crate::PayloadSchema> {
        Some(crate::PayloadSchema::of::<T>())
    }
}

#[cfg(feature = "schemas")]
impl<T: schemars::JsonSchema> SchemaProbe<Option<crate::Json<T>>> {
    /// The schema of `T`.
    pub fn payload_schema(&self) -> Option<crate::PayloadSchema> {
        Some(crate::PayloadSchema::of::<T>())
    }
}

#[cfg(feature = "schemas")]
impl<T: schemars::JsonSchema> SchemaProbe<crate::Batch<crate::Json<T>>> {
    /// The schema of `T`: a batch handler receives one message per `T`.
    pub fn payload_schema(&self) -> Option<crate::PayloadSchema> {
        Some(crate::PayloadSchema::of::<T>())
    }
}

/// The fallback of [`SchemaProbe`]: no schema.
pub trait NoSchema {
    /// No schema.
    fn payload_schema(&self) -> Option<crate::PayloadSchema> {
        None
    }
}

impl<T: ?Sized> NoSchema for SchemaProbe<T> {}

/// Compile-time check used by `#[subscribe]`: a type is an extractor.
pub const fn assert_extractor<T: FromMessage>() {}

/// Compile-time check used by `#[subscribe]`: the return type makes a reply.
pub const fn assert_into_reply<T: crate::handler::reply::IntoReply>() {}

/// Used by `#[telestion::service]`: the version of the user's crate
/// (`CARGO_PKG_VERSION`, absent outside Cargo) for discovery replies.
pub fn with_crate_version(options: crate::Options, version: Option<&str>) -> crate::Options {
    match version {
        Some(version) => options.version(version),
        None => options,
    }
}

/// Used by `#[telestion::service]`: the result of the body of `main`
/// (an unsupported return type is reported at the user's return type).
pub fn setup_result<T: SetupResult>(value: T) -> Result<(), crate::BoxError> {
    value.into_result()
}

/// Used by `#[subscribe]`'s check for a second body extractor:
/// `<BodyProbe<T>>::BODY` is `T::BODY` for an extractor and, through
/// [`NotAnExtractor`], `false` otherwise (a non-extractor is reported
/// once, by [`assert_extractor`], not again here).
pub struct BodyProbe<T: ?Sized>(core::marker::PhantomData<T>);

impl<T: FromMessage> BodyProbe<T> {
    /// Whether `T` consumes the body.
    pub const BODY: bool = T::BODY;
}

/// The fallback of [`BodyProbe`] for types that are not extractors.
pub trait NotAnExtractor {
    /// Not a body extractor.
    const BODY: bool = false;
}

impl<T: ?Sized> NotAnExtractor for BodyProbe<T> {}

/// Used by `#[subscribe]`: the number of body extractors among a
/// handler's parameters, as a type (`N` is the sum of their
/// [`BodyProbe`]s).
pub struct BodyCount<const N: usize>;

/// Holds for a [`BodyCount`] of 0 or 1; checked by
/// [`assert_at_most_one_body`].
#[diagnostic::on_unimplemented(
    message = "a handler takes at most one body extractor",
    label = "more than one of these parameters consumes the message body",
    note = "take at most one body extractor; the docs of `telestion::extract` list which \
            extractors consume the body and which combine freely"
)]
pub trait AtMostOneBody {}

#[diagnostic::do_not_recommend]
impl AtMostOneBody for BodyCount<0> {}

#[diagnostic::do_not_recommend]
impl AtMostOneBody for BodyCount<1> {}

/// Compile-time check used by `#[subscribe]`: at most one parameter
/// consumes the body (a plain error, not a panic in a `const`).
pub const fn assert_at_most_one_body<T: AtMostOneBody>() {}

/// Implemented for the tuples (up to 12) of [`FromMessage`] types: the
/// parameter types of a handler are all extractors.
pub trait Extractors {}

macro_rules! impl_extractors {
    ($($ty:ident),*) => {
        impl<$($ty: FromMessage),*> Extractors for ($($ty,)*) {}
    };
}

impl_extractors!();
impl_extractors!(T1);
impl_extractors!(T1, T2);
impl_extractors!(T1, T2, T3);
impl_extractors!(T1, T2, T3, T4);
impl_extractors!(T1, T2, T3, T4, T5);
impl_extractors!(T1, T2, T3, T4, T5, T6);
impl_extractors!(T1, T2, T3, T4, T5, T6, T7);
impl_extractors!(T1, T2, T3, T4, T5, T6, T7, T8);
impl_extractors!(T1, T2, T3, T4, T5, T6, T7, T8, T9);
impl_extractors!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10);
impl_extractors!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11);
impl_extractors!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12);

/// Used by `#[subscribe]` to pass the handler to `Route::new` only
/// when its parameter types (`Args`, a tuple) are [`Extractors`] and
/// its return type (`Out`) is [`IntoReply`](crate::IntoReply): then
/// [`Checked::handler`] returns it. Otherwise that mistake is already
/// reported at the parameter or return type (by [`assert_extractor`]
/// or [`assert_into_reply`]), and [`Unchecked::handler`] returns a
/// stand-in, so that `Route::new` does not report it a second time.
/// Any other reason for not being a handler (a future that is not
/// `Send`, ...) is still reported by `Route::new`.
pub struct Checked<Args, Out, H> {
    handler: H,
    types: core::marker::PhantomData<fn() -> (Args, Out)>,
}

impl<Args, Out, H> Checked<Args, Out, H> {
    /// Wraps the handler.
    pub const fn new(handler: H) -> Self {
        Checked {
            handler,
            types: core::marker::PhantomData,
        }
    }
}

impl<Args: Extractors, Out: crate::IntoReply, H> Checked<Args, Out, H> {
    /// The handler.
    pub fn handler(self) -> H {
        self.handler
    }
}

impl<Args: Extractors, Out: crate::IntoReply, H> Checked<Args, Out, H> {
    /// The plain `fn` handler, to run on the blocking thread pool.
    pub fn blocking(self) -> crate::Blocking<H> {
        crate::Blocking(self.handler)
    }
}

/// The fallback of [`Checked`] when a parameter or the return type is
/// wrong (a compile error already).
pub trait Unchecked: Sized {
    /// A stand-in handler, never run (the crate does not compile).
    fn handler(self) -> fn() -> core::future::Ready<()> {
        || core::future::ready(())
    }

    /// A stand-in for a blocking handler, never run.
    fn blocking(self) -> fn() -> core::future::Ready<()> {
        || core::future::ready(())
    }
}

impl<Args, Out, H> Unchecked for Checked<Args, Out, H> {}
