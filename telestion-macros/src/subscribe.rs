//! `#[subscribe(...)]` on an `async fn` handler: parse the arguments and the
//! signature, validate, and expand into the unchanged function plus a
//! `static` route constructor in the link-time registry
//! (`telestion::__private::ROUTES`), with compile-time checks spanned at
//! each parameter, at the parameter list (at most one body extractor) and
//! at the return type.

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, FnArg, Ident, LitStr, Path, ReturnType, Signature, Type};

use crate::args::{self, Errors, Key, Positional, Spec};
use crate::func::{self, Function};
use telestion_rules::names::{is_config_key, is_queue_group, is_stream_or_consumer_name};
use telestion_rules::shape::{Misuse, Shape};
use telestion_rules::subject::SubjectError;
use telestion_rules::{limits, period as periods, subject};

/// The most parameters a handler may take (`Handler` is implemented for
/// functions of up to 12 arguments).
const MAX_PARAMS: usize = 12;

/// Where the subject comes from.
enum SubjectArg {
    Literal(LitStr),
    Config(LitStr),
}

/// The queue group choice.
enum QueueArg {
    /// `SERVICE_NAME` (default, or `queue = true`).
    ServiceName,
    /// `queue = false`.
    Broadcast,
    /// `queue = "name"`.
    Named(LitStr),
}

/// `durable`, `durable = true` or `durable = "consumer"`.
struct DurableArg {
    /// The consumer name, when given.
    consumer: Option<LitStr>,
}

/// What the arguments of `#[subscribe(...)]` ask for.
struct SubscribeArgs {
    /// Required: parsing reports an error when it is missing.
    subject: Option<SubjectArg>,
    queue: QueueArg,
    /// `queue = ...` as written, when given.
    queue_tokens: Option<TokenStream>,
    concurrency: Option<usize>,
    krate: Path,
    durable: Option<DurableArg>,
    /// `stream = "NAME"`: the key and the name.
    stream: Option<(Ident, LitStr)>,
    /// `default = "subject"`: the key and the subject used when the
    /// `config` key is not set.
    default: Option<(Ident, LitStr)>,
    /// `publish = "subject"` or `publish = ["a", "b"]`: the key and the
    /// subjects.
    publish: Option<(Ident, Vec<LitStr>)>,
    /// `publish_config = "KEY"`.
    publish_config: Option<(Ident, LitStr)>,
    /// `publish_default = "subject"` (with `publish_config`).
    publish_default: Option<(Ident, LitStr)>,
    /// `every = "100ms"`: the key and the period in nanoseconds.
    every: Option<(Ident, u64)>,
    /// `every_config = "KEY"`.
    every_config: Option<(Ident, LitStr)>,
    /// `every_default = "1s"` (with `every_config`), in nanoseconds.
    every_default: Option<(Ident, u64)>,
    /// `task`: the key, when given.
    task: Option<Ident>,
    /// `batch = N`: the key and the batch size.
    batch: Option<(Ident, usize)>,
    /// `batch_window = "50ms"`: the key and the window in nanoseconds.
    batch_window: Option<(Ident, u64)>,
}

/// The validated handler signature.
struct HandlerSig<'a> {
    ident: &'a Ident,
    /// The parentheses around the parameters.
    params_span: Span,
    params: Vec<&'a Type>,
    /// The declared return type, unless it is `()` or opaque (`impl Trait`).
    output: Option<&'a Type>,
    /// A plain `fn`: run on the blocking thread pool.
    blocking: bool,
}

// Input:  #[subscribe("a.b", queue = false, concurrency = 4)]
//         async fn handler(Json(x): Json<T>, subject: Subject) -> R { ... }
// Output: the function unchanged, one `assert_extractor::<P>()` per
//         parameter, one check that at most one parameter consumes the
//         body, an `assert_into_reply::<R>()`, and
//         static ROUTE: fn() -> Route = || Route::new("a.b", handler)
//             .name("module::handler").broadcast().concurrency(4);
//         in the `ROUTES` distributed slice (`handler` passed through
//         `Checked`, so that a wrong parameter or return type is reported
//         once, at that type, and not again by `Route::new`).
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = parse_args(args, &mut errors);
    let func = match syn::parse2::<Function>(item.clone()) {
        Ok(func) => func,
        // A syntax error in the signature: passed through unchanged, so
        // that the compiler reports it.
        Err(_) if func::is_unparsable_function(&item) => return with_error(errors, item),
        Err(_) => {
            errors.spanned(
                first_token(&item),
                "`#[subscribe]` goes on an `async fn` handler; write \
                 `#[subscribe(\"subject\")] async fn name(...) { ... }` (or a plain `fn` \
                 for a blocking handler)",
            );
            return with_error(errors, item);
        }
    };
    let sig = check_handler(&func.sig, &mut errors);
    // The item is emitted as written: a syntax error in the body is
    // reported by the compiler.
    if let (Some(args), Some(sig)) = (&args, &sig)
        && (args.subject.is_some()
            || args.every.is_some()
            || args.every_config.is_some()
            || args.task.is_some())
        && errors.is_empty()
    {
        let registration = generate(args.subject.as_ref(), args, sig);
        quote!(#item #registration)
    } else {
        with_error(errors, item)
    }
}

fn with_error(errors: Errors, item: TokenStream) -> TokenStream {
    let error = errors.finish().err().map(|e| e.to_compile_error());
    quote!(#error #item)
}

fn first_token(item: &TokenStream) -> TokenStream {
    item.clone().into_iter().take(1).collect()
}

/// The arguments of `#[subscribe]`: a parse function for the subject
/// literal and for each key.
const SPEC: Spec<SubscribeArgs> = Spec {
    positional: Some(Positional {
        usage: "a subject literal (`\"sensors.temperature\"`)",
        parse: parse_subject,
    }),
    keys: &[
        Key {
            name: "config",
            usage: "`config = \"KEY\"` (subject from config)",
            parse: parse_config,
        },
        Key {
            name: "default",
            usage: "`default = \"subject\"` (with `config`: the subject when the key is not set)",
            parse: parse_default,
        },
        Key {
            name: "publish",
            usage: "`publish = \"subject\"` or `publish = [\"a\", \"b\"]` (publish the return value)",
            parse: parse_publish,
        },
        Key {
            name: "publish_config",
            usage: "`publish_config = \"KEY\"` (publish the return value to a subject from config)",
            parse: parse_publish_config,
        },
        Key {
            name: "publish_default",
            usage: "`publish_default = \"subject\"` (with `publish_config`: the subject when the key is not set)",
            parse: parse_publish_default,
        },
        Key {
            name: "every",
            usage: "`every = \"100ms\"` (a timer instead of a subject)",
            parse: parse_every,
        },
        Key {
            name: "every_config",
            usage: "`every_config = \"KEY\"` (a timer with its period from config)",
            parse: parse_every_config,
        },
        Key {
            name: "every_default",
            usage: "`every_default = \"1s\"` (with `every_config`: the period when the key is not set)",
            parse: parse_every_default,
        },
        Key {
            name: "task",
            usage: "`task` (run once after start, restarted with back-off when it fails)",
            parse: parse_task,
        },
        Key {
            name: "queue",
            usage: "`queue = false` or `queue = \"name\"`",
            parse: parse_queue,
        },
        Key {
            name: "concurrency",
            usage: "`concurrency = N`",
            parse: parse_concurrency,
        },
        Key {
            name: "batch",
            usage: "`batch = N` (one call for up to N messages, with a `Batch<T>` parameter)",
            parse: parse_batch,
        },
        Key {
            name: "batch_window",
            usage: "`batch_window = \"50ms\"` (with `batch`: how long a batch waits for more messages)",
            parse: parse_batch_window,
        },
        Key {
            name: "durable",
            usage: "`durable` or `durable = \"consumer\"` (consume a JetStream stream)",
            parse: parse_durable,
        },
        Key {
            name: "stream",
            usage: "`stream = \"NAME\"` (the stream of a durable handler)",
            parse: parse_stream,
        },
        Key {
            name: "crate",
            usage: "`crate = \"path\"`",
            parse: parse_crate,
        },
    ],
    flags: &["durable", "task"],
};

/// Parses the arguments; `None` when they are not an argument list. A
/// missing subject is reported (unless other errors may explain it).
fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Option<SubscribeArgs> {
    let mut args = SubscribeArgs {
        subject: None,
        queue: QueueArg::ServiceName,
        queue_tokens: None,
        concurrency: None,
        krate: args::default_crate(),
        durable: None,
        stream: None,
        default: None,
        publish: None,
        publish_config: None,
        publish_default: None,
        every: None,
        every_config: None,
        every_default: None,
        task: None,
        batch: None,
        batch_window: None,
    };
    if !SPEC.parse(tokens, &mut args, errors) {
        return None;
    }
    if let (Some((key, _)), Some(SubjectArg::Literal(_)) | None) = (&args.default, &args.subject) {
        errors.spanned(
            key,
            "`default` is the subject used when the `config` key is not set; add `config = \
             \"KEY\"` (`#[subscribe(config = \"INPUT_SUBJECT\", default = \"sensors.raw\")]`) \
             or remove `default`",
        );
    }
    if let (Some((key, _)), None) = (&args.publish_default, &args.publish_config) {
        errors.spanned(
            key,
            "`publish_default` is the subject used when the `publish_config` key is not set; \
             add `publish_config = \"KEY\"` or remove `publish_default`",
        );
    }
    if let (Some((key, _)), None) = (&args.every_default, &args.every_config) {
        errors.spanned(
            key,
            "`every_default` is the period used when the `every_config` key is not set; add \
             `every_config = \"KEY\"` or remove `every_default`",
        );
    }
    if let (Some((key, _)), Some(_)) = (&args.every, &args.every_config) {
        errors.spanned(
            key,
            "give either `every = \"100ms\"` or `every_config = \"KEY\"`, not both",
        );
    }
    // Which settings go together: the rule the runtime applies to routes
    // built by hand, reported here at the argument it is about.
    let shape = Shape {
        subject: args.subject.is_some(),
        timer: args.every.is_some() || args.every_config.is_some(),
        task: args.task.is_some(),
        durable: args.durable.is_some(),
        stream: args.stream.is_some(),
        queue: args.queue_tokens.is_some(),
        concurrency: args.concurrency,
        batch: args.batch.is_some(),
        batch_window: args.batch_window.is_some(),
        takes_batch: None,
    };
    for misuse in shape.misuses() {
        let at: Option<TokenStream> = match misuse.setting() {
            "queue" => args.queue_tokens.clone(),
            "stream" => args.stream.as_ref().map(|(key, _)| key.to_token_stream()),
            "batch_window" => args
                .batch_window
                .as_ref()
                .map(|(key, _)| key.to_token_stream()),
            "batch" => args.batch.as_ref().map(|(key, _)| key.to_token_stream()),
            "task" => args.task.as_ref().map(ToTokens::to_token_stream),
            "every" => args
                .every
                .as_ref()
                .map(|(key, _)| key.to_token_stream())
                .or_else(|| {
                    args.every_config
                        .as_ref()
                        .map(|(key, _)| key.to_token_stream())
                }),
            _ => None,
        };
        match (misuse, at) {
            (_, Some(tokens)) => errors.spanned(tokens, misuse),
            // With other errors, one of them (e.g. `config = 3`) may be why.
            (Misuse::NoSubject, None) if errors.is_empty() => errors.at(Span::call_site(), misuse),
            _ => {}
        }
    }
    Some(args)
}

/// The subject literal, `"sensors.temperature"`.
fn parse_subject(args: &mut SubscribeArgs, value: &Expr, errors: &mut Errors) {
    let Some(lit) = args::lit_str(value) else {
        errors.spanned(
            value,
            "the subject must be a string literal such as `\"sensors.temperature\"`; for a \
             subject from config write `config = \"KEY\"`",
        );
        return;
    };
    if let Err(message) = subject_error(&lit.value()) {
        errors.spanned(lit, message);
    }
    set_subject(args, SubjectArg::Literal(lit.clone()), lit, errors);
}

/// Why a subject literal is not one (the rule of `telestion-rules`, with
/// the macro's own hint for an empty one).
fn subject_error(text: &str) -> Result<(), String> {
    subject::validate(text).map_err(|error| match error {
        SubjectError::Empty => format!("{error}, or `config = \"KEY\"` to read it from config"),
        other => other.to_string(),
    })
}

/// `config = "KEY"`: the subject is the value of a config key.
fn parse_config(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_str(value) {
        Some(lit) if is_config_key(&lit.value()) => set_subject(
            args,
            SubjectArg::Config(lit.clone()),
            quote!(#key = #value),
            errors,
        ),
        _ => errors.spanned(
            value,
            "`config` takes the name of a config key as a string; write \
             `config = \"INPUT_SUBJECT\"`",
        ),
    }
}

/// `default = "subject"`: the subject when the `config` key is not set,
/// validated like a subject literal.
fn parse_default(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    let Some(lit) = args::lit_str(value) else {
        errors.spanned(
            value,
            "`default` takes a subject literal; write `default = \"sensors.raw\"`",
        );
        return;
    };
    if let Err(message) = subject_error(&lit.value()) {
        errors.spanned(lit, message);
    }
    args.default = Some((key.clone(), lit.clone()));
}

/// A subject literal to publish to: valid and without wildcards.
fn publish_subject(value: &Expr, key: &str, errors: &mut Errors) -> Option<LitStr> {
    let Some(lit) = args::lit_str(value) else {
        errors.spanned(
            value,
            format!("`{key}` takes a subject literal; write `{key} = \"sensors.fahrenheit\"`"),
        );
        return None;
    };
    if let Err(error) = subject::validate_publish(&lit.value()) {
        errors.spanned(lit, error);
        return None;
    }
    Some(lit.clone())
}

/// `publish = "subject"` or `publish = ["a", "b"]`.
fn parse_publish(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    let values: Vec<&Expr> = match value {
        Expr::Array(array) if array.attrs.is_empty() => array.elems.iter().collect(),
        other => vec![other],
    };
    if values.is_empty() {
        errors.spanned(
            value,
            "`publish` needs at least one subject; write `publish = \"sensors.fahrenheit\"`",
        );
        return;
    }
    let subjects = values
        .into_iter()
        .filter_map(|value| publish_subject(value, "publish", errors))
        .collect();
    args.publish = Some((key.clone(), subjects));
}

/// `publish_config = "KEY"`.
fn parse_publish_config(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_str(value) {
        Some(lit) if is_config_key(&lit.value()) => {
            args.publish_config = Some((key.clone(), lit.clone()));
        }
        _ => errors.spanned(
            value,
            "`publish_config` takes the name of a config key as a string; write \
             `publish_config = \"OUTPUT_SUBJECT\"`",
        ),
    }
}

/// `publish_default = "subject"`.
fn parse_publish_default(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    if let Some(lit) = publish_subject(value, "publish_default", errors) {
        args.publish_default = Some((key.clone(), lit));
    }
}

/// A period literal such as `"100ms"`, `"2s"`, `"5m"`, `"1h"`, in
/// nanoseconds (the rule of `telestion::parse_period`, within the bounds of
/// a timer's period).
fn period(value: &Expr, key: &str, errors: &mut Errors) -> Option<u64> {
    let parsed = args::lit_str(value).map(|lit| {
        periods::parse_within(&lit.value(), periods::TIMER_BOUNDS)
            .map(|period| u64::try_from(period.as_nanos()).unwrap_or(u64::MAX))
    });
    match parsed {
        Some(Ok(nanos)) => Some(nanos),
        Some(Err(error)) => {
            errors.spanned(value, format!("`{key}` takes a period: {error}"));
            None
        }
        None => {
            errors.spanned(
                value,
                format!(
                    "`{key}` takes a period more than 0 as a string: a number and a unit (`ms`, \
                     `s`, `m`, `h`); write `{key} = \"100ms\"`"
                ),
            );
            None
        }
    }
}

/// `batch = N` with `1 <= N <= limits::MAX_BATCH`.
fn parse_batch(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_int(value).map(|lit| lit.base10_parse::<usize>()) {
        Some(Ok(n)) if limits::is_batch_size(n) => args.batch = Some((key.clone(), n)),
        _ => errors.spanned(
            value,
            format!(
                "`batch` takes the largest number of messages per call, from 1 to {}; write \
                 `batch = 100`",
                limits::MAX_BATCH
            ),
        ),
    }
}

/// `batch_window = "50ms"`.
fn parse_batch_window(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    if let Some(nanos) = period(value, "batch_window", errors) {
        args.batch_window = Some((key.clone(), nanos));
    }
}

/// `task` or `task = true`.
fn parse_task(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_bool(value) {
        Some(lit) => args.task = lit.value.then(|| key.clone()),
        None => errors.spanned(value, "`task` takes no value; write `#[subscribe(task)]`"),
    }
}

/// `every = "100ms"`.
fn parse_every(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    if let Some(nanos) = period(value, "every", errors) {
        args.every = Some((key.clone(), nanos));
    }
}

/// `every_config = "KEY"`.
fn parse_every_config(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_str(value) {
        Some(lit) if is_config_key(&lit.value()) => {
            args.every_config = Some((key.clone(), lit.clone()));
        }
        _ => errors.spanned(
            value,
            "`every_config` takes the name of a config key as a string; write \
             `every_config = \"POLL_PERIOD\"`",
        ),
    }
}

/// `every_default = "1s"`.
fn parse_every_default(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    if let Some(nanos) = period(value, "every_default", errors) {
        args.every_default = Some((key.clone(), nanos));
    }
}

/// Sets the subject, or reports a second one at `tokens`.
fn set_subject(
    args: &mut SubscribeArgs,
    subject: SubjectArg,
    tokens: impl ToTokens,
    errors: &mut Errors,
) {
    match (&args.subject, &subject) {
        (None, _) => args.subject = Some(subject),
        (Some(SubjectArg::Literal(_)), SubjectArg::Literal(_)) => errors.spanned(
            tokens,
            "a handler has one subject; subscribe a second handler for another subject, or use \
             a wildcard (`*`, `>`)",
        ),
        (Some(_), _) => errors.spanned(
            tokens,
            "give either a subject literal or `config = \"KEY\"`, not both; remove one of them",
        ),
    }
}

/// `durable`, `durable = true`, `durable = false` or `durable = "consumer"`.
fn parse_durable(args: &mut SubscribeArgs, _: &Ident, value: &Expr, errors: &mut Errors) {
    if let Some(lit) = args::lit_bool(value) {
        args.durable = lit.value.then_some(DurableArg { consumer: None });
    } else if let Some(lit) = args::lit_str(value)
        && is_stream_or_consumer_name(&lit.value())
    {
        args.durable = Some(DurableArg {
            consumer: Some(lit.clone()),
        });
    } else {
        errors.spanned(
            value,
            "`durable` takes no value, or the name of its durable consumer as a string without \
             `.`, `*`, `>`, `/`, `\\` or whitespace; write `durable` or \
             `durable = \"executor\"`",
        );
    }
}

/// `stream = "NAME"`.
fn parse_stream(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_str(value) {
        Some(lit) if is_stream_or_consumer_name(&lit.value()) => {
            args.stream = Some((key.clone(), lit.clone()));
        }
        _ => errors.spanned(
            value,
            "`stream` takes the name of a JetStream stream as a string without `.`, `*`, `>`, \
             `/`, `\\` or whitespace; write `stream = \"COMMANDS\"`",
        ),
    }
}

/// `queue = false`, `queue = true` (the default) or `queue = "name"`.
fn parse_queue(args: &mut SubscribeArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    args.queue_tokens = Some(quote!(#key = #value));
    if let Some(lit) = args::lit_bool(value) {
        args.queue = if lit.value {
            QueueArg::ServiceName
        } else {
            QueueArg::Broadcast
        };
    } else if let Some(lit) = args::lit_str(value)
        && is_queue_group(&lit.value())
    {
        args.queue = QueueArg::Named(lit.clone());
    } else {
        errors.spanned(
            value,
            "`queue` takes `false` (every instance receives every message) or a queue group \
             name without whitespace; write `queue = false` or `queue = \"workers\"` (default: \
             the queue group SERVICE_NAME)",
        );
    }
}

/// `concurrency = N` with `N >= 1`.
fn parse_concurrency(args: &mut SubscribeArgs, _: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_int(value).map(|lit| lit.base10_parse::<usize>()) {
        Some(Ok(n)) if n >= 1 => args.concurrency = Some(n),
        Some(Ok(_)) => errors.spanned(
            value,
            "`concurrency = 0` would never handle a message; write `concurrency = 1` (the \
             default: one at a time, in order) or more",
        ),
        _ => errors.spanned(
            value,
            "`concurrency` takes a positive integer literal; write `concurrency = 4` to handle \
             up to 4 messages at once",
        ),
    }
}

/// `crate = "path"`.
fn parse_crate(args: &mut SubscribeArgs, _: &Ident, value: &Expr, errors: &mut Errors) {
    if let Some(path) = args::crate_path(value, errors) {
        args.krate = path;
    }
}

/// Checks the signature: async, no receiver, not generic, at most
/// `MAX_PARAMS` owned parameters without `impl Trait`.
fn check_handler<'a>(sig: &'a Signature, errors: &mut Errors) -> Option<HandlerSig<'a>> {
    let mut ok = true;
    let mut fail = |errors: &mut Errors, tokens: &dyn ToTokens, message: &str| {
        ok = false;
        errors.spanned(tokens, message);
    };
    // A plain `fn` is a blocking handler, run on the blocking thread pool.
    let blocking = sig.asyncness.is_none();
    if let Some(constness) = &sig.constness {
        fail(
            errors,
            constness,
            "a handler cannot be `const`; remove `const`",
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        fail(
            errors,
            unsafety,
            "a handler cannot be `unsafe fn`; remove `unsafe` and use an `unsafe` block inside",
        );
    }
    if let Some(abi) = &sig.abi {
        fail(errors, abi, "a handler cannot have an ABI; remove it");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(
            errors,
            &sig.generics,
            "a handler cannot be generic (the registry needs one concrete function); remove \
             the generic parameters and name concrete types, e.g. `Json<Reading>`",
        );
    }
    if let Some(variadic) = &sig.variadic {
        fail(errors, variadic, "a handler cannot be variadic");
    }
    let mut params = Vec::new();
    for (index, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(receiver) => fail(
                errors,
                receiver,
                "a handler cannot take `self`; write a free `async fn` at module level and take \
                 shared data as `State<T>` (provided in main with `service.provide(value)`)",
            ),
            FnArg::Typed(typed) => {
                if index == MAX_PARAMS {
                    fail(
                        errors,
                        typed,
                        "a handler takes at most 12 parameters; group the data you need in a \
                         `State<T>` or a `TypedConfig<T>`",
                    );
                }
                let mut borrow = BorrowFinder::default();
                borrow.visit_type(&typed.ty);
                if let Some((tokens, message)) = borrow.found {
                    let message = if blocking {
                        "a blocking handler (a plain `fn`, run on the blocking thread pool) \
                         cannot take a borrowed parameter: it runs on another thread, after the \
                         message is gone, and must own its values; write an owned extractor \
                         such as `String`, `Bytes` or `Json<T>`"
                    } else {
                        message
                    };
                    fail(errors, &tokens, message);
                } else {
                    params.push(&*typed.ty);
                }
            }
        }
    }
    let output = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => {
            let mut opaque = ImplTraitFinder(false);
            opaque.visit_type(ty);
            (!opaque.0).then_some(&**ty)
        }
    };
    ok.then_some(HandlerSig {
        ident: &sig.ident,
        params_span: sig.paren_token.span.join(),
        params,
        output,
        blocking,
    })
}

/// Finds what a handler parameter cannot have: a borrow (references and
/// lifetimes other than `'static`) or `impl Trait`.
#[derive(Default)]
struct BorrowFinder {
    found: Option<(TokenStream, &'static str)>,
}

impl<'ast> Visit<'ast> for BorrowFinder {
    fn visit_type_reference(&mut self, reference: &'ast syn::TypeReference) {
        if reference
            .lifetime
            .as_ref()
            .is_some_and(|lifetime| lifetime.ident == "static")
        {
            return syn::visit::visit_type_reference(self, reference);
        }
        self.found.get_or_insert((
            reference.to_token_stream(),
            "a handler parameter cannot borrow: it must own its value (the message is gone \
             when the handler runs); write an owned extractor such as `String`, `Bytes` or \
             `Json<T>`",
        ));
    }

    fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
        if lifetime.ident != "static" {
            self.found.get_or_insert((
                lifetime.to_token_stream(),
                "a handler parameter cannot have a lifetime other than `'static`; write an \
                 owned type",
            ));
        }
    }

    fn visit_type_impl_trait(&mut self, impl_trait: &'ast syn::TypeImplTrait) {
        self.found.get_or_insert((
            impl_trait.to_token_stream(),
            "a handler parameter cannot be `impl Trait` (that makes the handler generic); \
             name a concrete extractor type such as `Json<Reading>`",
        ));
    }
}

/// Whether a type contains `impl Trait`.
struct ImplTraitFinder(bool);

impl<'ast> Visit<'ast> for ImplTraitFinder {
    fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
        self.0 = true;
    }
}

fn generate(subject: Option<&SubjectArg>, args: &SubscribeArgs, sig: &HandlerSig) -> TokenStream {
    let krate = &args.krate;
    let private = quote!(#krate::__private);
    let ident = sig.ident;
    let name = ident.to_string();
    let params = &sig.params;

    let param_checks = params.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            const _: () = #private::assert_extractor::<#ty>();
        }
    });
    // One check over all parameters, spanned at the parameter list: the
    // number of body extractors as a type, which must be 0 or 1.
    // Non-extractors count as "no body" here (`BodyProbe` falls back to
    // `NotAnExtractor`), so they are reported once, by `assert_extractor`.
    let body_check = (params.len() > 1).then(|| {
        let private = respan(private.clone(), sig.params_span);
        quote_spanned! {sig.params_span=>
            const _: () = {
                #[allow(unused_imports)]
                use #private::NotAnExtractor as _;
                #private::assert_at_most_one_body::<
                    #private::BodyCount<{ #(<#private::BodyProbe<#params>>::BODY as usize)+* }>,
                >()
            };
        }
    });
    let output_check = sig.output.map(|ty| {
        quote_spanned! {ty.span()=>
            const _: () = #private::assert_into_reply::<#ty>();
        }
    });

    // `Checked` hands the handler to `Route::new` only when the checks
    // above hold, and a stand-in otherwise: then `Route::new` adds no
    // second error about the same mistake. Spanned at the name of the
    // handler, where `Route::new` reports any other reason.
    let private_at_ident = respan(private.clone(), ident.span());
    let output = match sig.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let method = if sig.blocking {
        quote_spanned!(ident.span()=> blocking)
    } else {
        quote_spanned!(ident.span()=> handler)
    };
    let handler = quote_spanned! {ident.span()=>
        #private_at_ident::Checked::<(#(#params,)*), #output, _>::new(#ident).#method()
    };
    let route = match subject {
        None => match (&args.every, &args.every_config) {
            (Some((_, nanos)), _) => quote!(#private::Route::every(
                ::core::time::Duration::from_nanos(#nanos),
                #handler
            )),
            (None, Some((_, key))) => {
                let default = args.every_default.as_ref().map(|(_, nanos)| {
                    quote!(.default_period(::core::time::Duration::from_nanos(#nanos)))
                });
                quote!(#private::Route::every_config(#key, #handler) #default)
            }
            (None, None) => quote!(#private::Route::task(#handler)),
        },
        Some(SubjectArg::Literal(subject)) => quote!(#private::Route::new(#subject, #handler)),
        Some(SubjectArg::Config(key)) => {
            let default = args
                .default
                .as_ref()
                .map(|(_, subject)| quote!(.default_subject(#subject)));
            quote!(#private::Route::from_config(#key, #handler) #default)
        }
    };
    let queue = match &args.queue {
        QueueArg::ServiceName => None,
        QueueArg::Broadcast => Some(quote!(.broadcast())),
        QueueArg::Named(name) => Some(quote!(.queue_group(#name))),
    };
    let concurrency = args.concurrency.map(|n| {
        let n = Literal::usize_unsuffixed(n);
        quote!(.concurrency(#n))
    });
    let batch = args.batch.as_ref().map(|(_, n)| {
        let n = Literal::usize_unsuffixed(*n);
        let window = match &args.batch_window {
            Some((_, nanos)) => quote!(::core::time::Duration::from_nanos(#nanos)),
            None => quote!(::core::time::Duration::from_millis(#private::DEFAULT_BATCH_WINDOW_MS)),
        };
        quote!(.batch(#n, #window))
    });
    let durable = args.durable.as_ref().map(|durable| {
        let consumer = durable
            .consumer
            .as_ref()
            .map(|name| quote!(.consumer(#name)));
        let stream = args.stream.as_ref().map(|(_, name)| quote!(.stream(#name)));
        quote!(.durable(#private::Durable::new() #consumer #stream))
    });

    let publish = args
        .publish
        .iter()
        .flat_map(|(_, subjects)| subjects)
        .map(|subject| quote!(.publish_to(#subject)));
    let publish_config = args.publish_config.as_ref().map(|(_, key)| {
        let default = args
            .publish_default
            .as_ref()
            .map(|(_, subject)| quote!(.or_default(#subject)));
        quote!(.publish_to(#private::PublishTarget::config(#key) #default))
    });

    // The payload schemas for the AsyncAPI document: a runtime call per
    // type, `None` unless the crate feature `schemas` is on and the type
    // is `Json<T>` with `T: JsonSchema`.
    let schema_params = params
        .iter()
        .map(|ty| quote!(#private::SchemaProbe::<#ty>::NEW.payload_schema()));
    let replies = sig.output.is_some();

    quote! {
        #(#param_checks)*
        #body_check
        #output_check
        const _: () = {
            #[allow(unused_imports)]
            use #private::Unchecked as _;
            #[allow(unused_imports)]
            use #private::NoSchema as _;
            #[#private::linkme::distributed_slice(#private::ROUTES)]
            #[linkme(crate = #private::linkme)]
            static __TELESTION_ROUTE: fn() -> #private::Route = || {
                #private::with_schemas(
                    #route
                        .name(::core::concat!(::core::module_path!(), "::", #name))
                        #queue
                        #concurrency
                        #batch
                        #durable
                        #(#publish)*
                        #publish_config,
                    &[#(#schema_params),*],
                    #private::SchemaProbe::<#output>::NEW.payload_schema(),
                    #replies,
                )
            };
        };
    }
}

/// `tokens` with every span set to `span`: an error about an expression
/// is shown at the span of all of its tokens, and the interpolated crate
/// path would otherwise point it at the attribute.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                token = TokenTree::Group(respanned);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn idents(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
        for tree in tokens {
            match tree {
                proc_macro2::TokenTree::Ident(ident) => out.push(ident.to_string()),
                proc_macro2::TokenTree::Group(group) => idents(group.stream(), out),
                _ => {}
            }
        }
    }

    /// With `crate = "..."`, generated code reaches telestion only through
    /// that path (the UI tests can only show that the path works).
    #[test]
    fn crate_argument_replaces_every_telestion_path() {
        let expanded = super::expand(
            quote!("a.b", queue = false, concurrency = 2, crate = "::renamed"),
            quote!(
                async fn handler(Json(x): Json<u8>, s: Subject) -> Json<u8> {
                    Json(x)
                }
            ),
        );
        let mut names = Vec::new();
        idents(expanded.clone(), &mut names);
        assert!(names.contains(&"renamed".to_owned()), "{expanded}");
        assert!(!names.contains(&"telestion".to_owned()), "{expanded}");

        let expanded = crate::service::expand(
            quote!(crate = "renamed"),
            quote!(
                async fn main(service: Service) -> Result<(), String> {
                    Ok(())
                }
            ),
        );
        let mut names = Vec::new();
        idents(expanded.clone(), &mut names);
        assert!(names.contains(&"renamed".to_owned()), "{expanded}");
        assert!(!names.contains(&"telestion".to_owned()), "{expanded}");
    }

    /// On error the handler is still emitted (no cascading "not found").
    #[test]
    fn errors_keep_the_item() {
        let expanded = super::expand(
            quote!("a..b", nope = 1),
            quote!(
                fn handler(&self) {}
            ),
        );
        let text = expanded.to_string();
        assert!(text.contains("fn handler"), "{text}");
        assert_eq!(text.matches("compile_error").count(), 3, "{text}");
    }

    /// Every key of the table is named in the error for an unknown one.
    #[test]
    fn unknown_argument_lists_every_key() {
        let text = super::expand(
            quote!("a.b", nope = 1),
            quote!(
                async fn handler() {}
            ),
        )
        .to_string();
        assert!(text.contains("unknown argument `nope`"), "{text}");
        for key in super::SPEC.keys {
            let usage = key.usage.replace('"', "\\\"");
            assert!(text.contains(&usage), "{usage} in {text}");
        }
    }

    /// The body check is one assertion over all parameters.
    #[test]
    fn one_body_check_for_all_parameters() {
        let text = super::expand(
            quote!("a.b"),
            quote!(
                async fn handler(a: Json<u8>, b: Subject, c: String) {}
            ),
        )
        .to_string();
        assert_eq!(text.matches("assert_at_most_one_body").count(), 1, "{text}");
        assert_eq!(text.matches("BodyProbe").count(), 3, "{text}");
        let one = super::expand(
            quote!("a.b"),
            quote!(
                async fn handler(a: String) {}
            ),
        )
        .to_string();
        assert!(!one.contains("assert_at_most_one_body"), "{one}");
    }

    /// A syntax error in the body: the function is emitted as written (the
    /// compiler reports the error) and registered; the macro adds no error.
    #[test]
    fn body_with_a_syntax_error_is_kept_as_written() {
        let item = quote!(
            async fn handler(text: String) {
                let x = ;
            }
        );
        let text = super::expand(quote!("a.b"), item.clone()).to_string();
        assert!(text.starts_with(&item.to_string()), "{text}");
        assert!(text.contains("__TELESTION_ROUTE"), "{text}");
        assert!(!text.contains("compile_error"), "{text}");

        let text = crate::service::expand(
            quote!(),
            quote!(
                async fn main() {
                    let x = ;
                }
            ),
        )
        .to_string();
        assert!(text.contains("let x = ;"), "{text}");
        assert!(!text.contains("compile_error"), "{text}");
    }

    /// A syntax error in the signature: the function is passed through
    /// unchanged, for the compiler to report.
    #[test]
    fn signature_with_a_syntax_error_is_passed_through() {
        let item = quote!(
            async fn handler(text: ) {}
        );
        let text = super::expand(quote!("a.b"), item.clone()).to_string();
        assert_eq!(text, item.to_string());

        // `main` is renamed (an `async fn main` is an error of its own).
        let text =
            crate::service::expand(quote!(), quote!(async fn main(service: ) {})).to_string();
        assert!(
            text.contains("async fn __telestion_main (service :)"),
            "{text}"
        );
        assert!(text.contains("fn main () { }"), "{text}");
        assert!(!text.contains("compile_error"), "{text}");
    }

    /// Something that is not a function with a body still gets the macro's
    /// error.
    #[test]
    fn not_a_function_is_an_error() {
        for item in [
            quote!(
                struct Handler;
            ),
            quote!(
                fn handler(&self);
            ),
        ] {
            let text = super::expand(quote!("a.b"), item).to_string();
            assert!(text.contains("goes on an `async fn` handler"), "{text}");
        }
    }
}
