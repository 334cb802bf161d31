//! `#[subscribe(...)]` on an `async fn` handler: parse the arguments and the
//! signature, validate, and expand into the unchanged function plus a
//! `static` route constructor in the link-time registry
//! (`telestion::__private::ROUTES`), with compile-time checks spanned at
//! each parameter and at the return type.

use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Path, ReturnType, Type};

use crate::args::{self, Arg, Args, Errors};
use crate::subject;

/// The most parameters a handler may take (`Handler` is implemented for
/// functions of up to 12 arguments).
const MAX_PARAMS: usize = 12;

const VALID_ARGS: &str = "a subject literal (`\"sensors.temperature\"`), `config = \"KEY\"` \
                          (subject from config), `queue = false` or `queue = \"name\"`, \
                          `concurrency = N` and `crate = \"path\"`";

const BODY_KINDS: &str = "`Json<T>`, `Bytes`, `Vec<u8>`, `String`, `Message`";

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

/// What the arguments of `#[subscribe(...)]` ask for.
struct SubscribeArgs {
    subject: SubjectArg,
    queue: QueueArg,
    concurrency: Option<usize>,
    krate: Path,
}

/// The validated handler signature.
struct HandlerSig<'a> {
    ident: &'a Ident,
    params: Vec<&'a Type>,
    /// The declared return type, unless it is `()` or opaque (`impl Trait`).
    output: Option<&'a Type>,
}

// Input:  #[subscribe("a.b", queue = false, concurrency = 4)]
//         async fn handler(Json(x): Json<T>, subject: Subject) -> R { ... }
// Output: the function unchanged, one `assert_extractor::<P>()` per
//         parameter, a check for a second body extractor, an
//         `assert_into_reply::<R>()`, and
//         static ROUTE: fn() -> Route = || Route::new("a.b", handler)
//             .name("module::handler").broadcast().concurrency(4);
//         in the `ROUTES` distributed slice.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = parse_args(args, &mut errors);
    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            errors.spanned(
                first_token(&item),
                "`#[subscribe]` goes on an `async fn` handler; write \
                 `#[subscribe(\"subject\")] async fn name(...) { ... }`",
            );
            return with_error(errors, item);
        }
    };
    let sig = check_handler(&func, &mut errors);
    match (args, sig) {
        (Some(args), Some(sig)) if errors.is_empty() => {
            let registration = generate(&args, &sig);
            quote!(#func #registration)
        }
        _ => with_error(errors, func.into_token_stream()),
    }
}

fn with_error(errors: Errors, item: TokenStream) -> TokenStream {
    let error = errors.finish().err().map(|e| e.to_compile_error());
    quote!(#error #item)
}

fn first_token(item: &TokenStream) -> TokenStream {
    item.clone().into_iter().take(1).collect()
}

/// Parses the subject (literal or `config = "KEY"`), `queue`,
/// `concurrency` and `crate`.
fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Option<SubscribeArgs> {
    let parsed = match syn::parse2::<Args>(tokens) {
        Ok(parsed) => parsed,
        Err(error) => {
            errors.push(error);
            return None;
        }
    };
    let mut subject: Option<(SubjectArg, TokenStream)> = None;
    let mut queue = QueueArg::ServiceName;
    let mut concurrency = None;
    let mut krate = args::default_crate();
    let mut seen = Vec::new();
    let mut set_subject = |new: SubjectArg, tokens: TokenStream, errors: &mut Errors| {
        if let Some((old, _)) = &subject {
            let message = match (old, &new) {
                (SubjectArg::Literal(_), SubjectArg::Literal(_)) => {
                    "a handler has one subject; subscribe a second handler for another \
                     subject, or use a wildcard (`*`, `>`)"
                }
                _ => {
                    "give either a subject literal or `config = \"KEY\"`, not both; remove \
                     one of them"
                }
            };
            errors.spanned(&tokens, message);
        } else {
            subject = Some((new, tokens));
        }
    };
    for arg in &parsed.0 {
        match arg {
            Arg::Positional(expr) => match args::lit_str(expr) {
                Some(lit) => {
                    if let Err(message) = subject::validate(&lit.value()) {
                        errors.spanned(lit, message);
                    }
                    set_subject(
                        SubjectArg::Literal(lit.clone()),
                        args::arg_tokens(arg),
                        errors,
                    );
                }
                None => match expr {
                    Expr::Path(path) if path.path.get_ident().is_some() => errors.spanned(
                        expr,
                        format!(
                            "unknown argument `{}`; the valid arguments are {VALID_ARGS}",
                            path.to_token_stream()
                        ),
                    ),
                    _ => errors.spanned(
                        expr,
                        "the subject must be a string literal such as `\"sensors.temperature\"`; \
                         for a subject from config write `config = \"KEY\"`",
                    ),
                },
            },
            Arg::Named { key, value } => {
                let name = key.to_string();
                if !["config", "queue", "concurrency", "crate"].contains(&name.as_str()) {
                    errors.spanned(
                        key,
                        format!("unknown argument `{key}`; the valid arguments are {VALID_ARGS}"),
                    );
                    continue;
                }
                if args::check_duplicate(&mut seen, key, errors) {
                    continue;
                }
                match name.as_str() {
                    "config" => match args::lit_str(value) {
                        Some(lit) if is_config_key(&lit.value()) => set_subject(
                            SubjectArg::Config(lit.clone()),
                            args::arg_tokens(arg),
                            errors,
                        ),
                        _ => errors.spanned(
                            value,
                            "`config` takes the name of a config key as a string; write \
                             `config = \"INPUT_SUBJECT\"`",
                        ),
                    },
                    "queue" => {
                        if let Some(lit) = args::lit_bool(value) {
                            queue = if lit.value {
                                QueueArg::ServiceName
                            } else {
                                QueueArg::Broadcast
                            };
                        } else if let Some(lit) = args::lit_str(value)
                            && is_queue_name(&lit.value())
                        {
                            queue = QueueArg::Named(lit.clone());
                        } else {
                            errors.spanned(
                                value,
                                "`queue` takes `false` (every instance receives every message) \
                                 or a queue group name without whitespace; write `queue = false` \
                                 or `queue = \"workers\"` (default: the queue group SERVICE_NAME)",
                            );
                        }
                    }
                    "concurrency" => {
                        match args::lit_int(value).map(|lit| lit.base10_parse::<usize>()) {
                            Some(Ok(n)) if n >= 1 => concurrency = Some(n),
                            Some(Ok(_)) => errors.spanned(
                                value,
                                "`concurrency = 0` would never handle a message; write \
                             `concurrency = 1` (the default: one at a time, in order) or more",
                            ),
                            _ => errors.spanned(
                                value,
                                "`concurrency` takes a positive integer literal; write \
                             `concurrency = 4` to handle up to 4 messages at once",
                            ),
                        }
                    }
                    _ => {
                        if let Some(path) = args::crate_path(value, errors) {
                            krate = path;
                        }
                    }
                }
            }
        }
    }
    let Some((subject, _)) = subject else {
        if !errors.is_empty() {
            return None;
        }
        errors.at(
            proc_macro2::Span::call_site(),
            "missing subject; write `#[subscribe(\"sensors.temperature\")]`, or \
             `#[subscribe(config = \"KEY\")]` to read the subject from config",
        );
        return None;
    };
    Some(SubscribeArgs {
        subject,
        queue,
        concurrency,
        krate,
    })
}

fn is_config_key(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(char::is_whitespace)
}

fn is_queue_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace)
}

/// Checks the signature: async, no receiver, not generic, at most
/// `MAX_PARAMS` owned parameters without `impl Trait`.
fn check_handler<'a>(func: &'a ItemFn, errors: &mut Errors) -> Option<HandlerSig<'a>> {
    let sig = &func.sig;
    let mut ok = true;
    let mut fail = |errors: &mut Errors, tokens: &dyn ToTokens, message: &str| {
        ok = false;
        errors.spanned(tokens, message);
    };
    if sig.asyncness.is_none() {
        fail(
            errors,
            &sig.fn_token,
            "a handler must be an `async fn`; write `async fn`",
        );
    }
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
        params,
        output,
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

fn generate(args: &SubscribeArgs, sig: &HandlerSig) -> TokenStream {
    let krate = &args.krate;
    let private = quote!(#krate::__private);
    let ident = sig.ident;
    let name = ident.to_string();

    let param_checks = sig.params.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            const _: () = #private::assert_extractor::<#ty>();
        }
    });
    // Spanned at each parameter after the first: an error when it and an
    // earlier one both consume the body. Non-extractors count as "no body"
    // here (`BodyProbe` falls back to `NotAnExtractor`), so they are
    // reported once, by `assert_extractor`.
    let body_checks = sig.params.iter().enumerate().skip(1).map(|(index, ty)| {
        let earlier = &sig.params[..index];
        let message = format!(
            "this handler takes a second body extractor; take at most one of {BODY_KINDS} (the \
             other extractors, such as `Subject`, `Headers`, `State<T>`, can be combined freely)"
        );
        quote_spanned! {ty.span()=>
            const _: () = {
                #[allow(unused_imports)]
                use #private::NotAnExtractor as _;
                if <#private::BodyProbe<#ty>>::BODY
                    && (false #(|| <#private::BodyProbe<#earlier>>::BODY)*)
                {
                    ::core::panic!(#message);
                }
            };
        }
    });
    let output_check = sig.output.map(|ty| {
        quote_spanned! {ty.span()=>
            const _: () = #private::assert_into_reply::<#ty>();
        }
    });

    let route = match &args.subject {
        SubjectArg::Literal(subject) => quote!(#krate::Route::new(#subject, #ident)),
        SubjectArg::Config(key) => quote!(#krate::Route::from_config(#key, #ident)),
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

    quote! {
        #(#param_checks)*
        #(#body_checks)*
        #output_check
        const _: () = {
            #[#private::linkme::distributed_slice(#private::ROUTES)]
            #[linkme(crate = #private::linkme)]
            static __TELESTION_ROUTE: fn() -> #krate::Route = || {
                #route
                    .name(::core::concat!(::core::module_path!(), "::", #name))
                    #queue
                    #concurrency
            };
        };
    }
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
        assert_eq!(text.matches("compile_error").count(), 4, "{text}");
    }
}
