//! `#[telestion::service]` on `async fn main`: parse the arguments and the
//! function, validate, and expand into a synchronous `main` that hands the
//! body to `telestion::__private::run`.

use proc_macro2::{Group, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, FnArg, Ident, Item, Pat, Path, ReturnType, Type, Visibility};

use crate::args::{self, Errors, Key, Spec};
use crate::func::{self, Function};

/// What the arguments of `#[telestion::service(...)]` ask for.
struct ServiceArgs {
    /// `nats = false`: run without a NATS connection.
    nats: bool,
    /// `crate = "..."`: path of the telestion crate.
    krate: Path,
    /// `publishes = [...]` and the other declarations of what the
    /// service's own code does on the bus: (the `Options` method, value).
    uses: Vec<(&'static str, syn::LitStr)>,
    /// `subscription_capacity = N`: the service's own default for
    /// `NATS_SUBSCRIPTION_CAPACITY`.
    subscription_capacity: Option<usize>,
}

/// The validated `async fn main`.
struct MainFn {
    attrs: Vec<Attribute>,
    vis: Visibility,
    /// The single parameter, if any: the `Service` handle.
    param: Option<(Box<Pat>, Box<Type>)>,
    output: ReturnType,
    /// The body, as written.
    body: Group,
}

// Input:  #[telestion::service(nats = false)]
//         async fn main(service: Service) -> Result<(), E> { body }
// Output: fn main() -> ExitCode {
//             async fn __telestion_main(service: Service) -> Result<(), E> { body }
//             ::telestion::__private::run(options, collected_routes(), |service| async move {
//                 <Result<(), E> as SetupResult>::into_result(__telestion_main(service).await)
//             })
//         }
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = parse_args(args, &mut errors);
    let main = match syn::parse2::<Function>(item.clone()) {
        Ok(func) => match check_main(func) {
            Ok(main) => Some(main),
            Err(error) => {
                errors.push(error);
                None
            }
        },
        // A syntax error in the signature: passed through, so that the
        // compiler reports it. (One in the body is reported from the
        // generated code, which has the body as written.)
        Err(_) if func::is_unparsable_function(&item) => return passed_through(errors, item),
        Err(error) => {
            match syn::parse2::<Item>(item.clone()) {
                Ok(other) => errors.spanned(
                    item_head(&other),
                    "`#[telestion::service]` goes on `async fn main() { ... }`; for a message \
                     handler use `#[subscribe(\"subject\")]` on an `async fn`",
                ),
                Err(_) => errors.push(error),
            }
            None
        }
    };
    match (errors.finish(), main) {
        (Ok(()), Some(main)) => generate(&args, main),
        (Err(error), _) => fallback(error, item),
        (Ok(()), None) => unreachable!("no main without an error"),
    }
}

/// The arguments of `#[telestion::service]`: a parse function per key.
const SPEC: Spec<ServiceArgs> = Spec {
    positional: None,
    flags: &[],
    keys: &[
        Key {
            name: "nats",
            usage: "`nats = false` (run without NATS)",
            parse: parse_nats,
        },
        Key {
            name: "publishes",
            usage: "`publishes = [\"subject\", ...]` (subjects the service's own code publishes to)",
            parse: parse_publishes,
        },
        Key {
            name: "requests",
            usage: "`requests = [\"subject\", ...]` (subjects the service's own code requests on)",
            parse: parse_requests,
        },
        Key {
            name: "subscribes",
            usage: "`subscribes = [\"subject\", ...]` (subjects the service's own code subscribes to)",
            parse: parse_subscribes,
        },
        Key {
            name: "streams",
            usage: "`streams = [\"NAME\", ...]` (JetStream streams the service declares)",
            parse: parse_streams,
        },
        Key {
            name: "key_value",
            usage: "`key_value = [\"BUCKET\", ...]` (JetStream key-value buckets the service uses)",
            parse: parse_key_value,
        },
        Key {
            name: "subscription_capacity",
            usage: "`subscription_capacity = 262_144` (messages buffered per subscription unless \
                    NATS_SUBSCRIPTION_CAPACITY says otherwise)",
            parse: parse_subscription_capacity,
        },
        Key {
            name: "crate",
            usage: "`crate = \"path\"` (the telestion crate under another name)",
            parse: parse_crate,
        },
    ],
};

/// Parses the arguments (the defaults where they are wrong, reported).
fn parse_args(tokens: TokenStream, errors: &mut Errors) -> ServiceArgs {
    let mut args = ServiceArgs {
        nats: true,
        krate: args::default_crate(),
        uses: Vec::new(),
        subscription_capacity: None,
    };
    SPEC.parse(tokens, &mut args, errors);
    args
}

/// `nats = true` (the default) or `nats = false`.
fn parse_nats(args: &mut ServiceArgs, _: &Ident, value: &Expr, errors: &mut Errors) {
    match args::lit_bool(value) {
        Some(lit) => args.nats = lit.value,
        None => errors.spanned(
            value,
            "`nats` takes `true` or `false`; write `nats = false` to run without a NATS \
             connection",
        ),
    }
}

/// A list of string literals for the `Options` method `method`.
fn parse_uses(
    method: &'static str,
    args: &mut ServiceArgs,
    key: &Ident,
    value: &Expr,
    errors: &mut Errors,
) {
    let items: Vec<&Expr> = match value {
        Expr::Array(array) => array.elems.iter().collect(),
        other => vec![other],
    };
    for item in items {
        match args::lit_str(item) {
            Some(lit) if !lit.value().is_empty() => args.uses.push((method, lit.clone())),
            _ => errors.spanned(
                item,
                format!("`{key}` takes a list of strings; write `{key} = [\"name\"]`"),
            ),
        }
    }
}

fn parse_publishes(args: &mut ServiceArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    parse_uses("publishes", args, key, value, errors);
}

fn parse_requests(args: &mut ServiceArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    parse_uses("requests", args, key, value, errors);
}

fn parse_subscribes(args: &mut ServiceArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    parse_uses("subscribes", args, key, value, errors);
}

fn parse_streams(args: &mut ServiceArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    parse_uses("streams", args, key, value, errors);
}

fn parse_key_value(args: &mut ServiceArgs, key: &Ident, value: &Expr, errors: &mut Errors) {
    parse_uses("key_value", args, key, value, errors);
}

/// `subscription_capacity = N`, N at least 1.
fn parse_subscription_capacity(
    args: &mut ServiceArgs,
    _: &Ident,
    value: &Expr,
    errors: &mut Errors,
) {
    match args::lit_int(value).map(|lit| lit.base10_parse::<usize>()) {
        Some(Ok(n)) if n >= 1 => args.subscription_capacity = Some(n),
        _ => errors.spanned(
            value,
            "`subscription_capacity` takes a number of messages, at least 1; write \
             `subscription_capacity = 262_144`",
        ),
    }
}

/// `crate = "path"`.
fn parse_crate(args: &mut ServiceArgs, _: &Ident, value: &Expr, errors: &mut Errors) {
    if let Some(path) = args::crate_path(value, errors) {
        args.krate = path;
    }
}

/// Checks that `func` is `async fn main` with at most one parameter.
fn check_main(func: Function) -> syn::Result<MainFn> {
    let mut errors = Errors::default();
    let sig = &func.sig;
    if sig.ident != "main" {
        errors.spanned(
            &sig.ident,
            format!(
                "`#[telestion::service]` goes on `async fn main`; rename `{}` to `main`, or \
                 use `#[subscribe(\"subject\")]` if this is a message handler",
                sig.ident
            ),
        );
    }
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            "`#[telestion::service]` needs an `async fn main`; write `async fn main`",
        );
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, "`main` cannot be `const`; remove `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(unsafety, "`main` cannot be `unsafe`; remove `unsafe`");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            "`main` cannot be generic; remove the generic parameters",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "`main` cannot be variadic");
    }
    let mut param = None;
    for (index, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                "`main` cannot take `self`; write `async fn main(service: telestion::Service)`",
            ),
            FnArg::Typed(typed) if index == 0 => {
                param = Some((typed.pat.clone(), typed.ty.clone()));
            }
            FnArg::Typed(typed) => errors.spanned(
                typed,
                "`main` takes at most one parameter, the service handle; write \
                 `async fn main(service: telestion::Service)` and get everything else from \
                 `service` (config, state, client)",
            ),
        }
    }
    errors.finish()?;
    Ok(MainFn {
        attrs: func.attrs,
        vis: func.vis,
        param,
        output: func.sig.output,
        body: func.body,
    })
}

fn generate(args: &ServiceArgs, main: MainFn) -> TokenStream {
    let ServiceArgs {
        nats,
        krate,
        uses,
        subscription_capacity,
    } = args;
    let MainFn {
        attrs,
        vis,
        param,
        output,
        body,
    } = main;
    let inner = quote::format_ident!("__telestion_main");
    let service = quote::format_ident!("__telestion_service");
    let (inner_fn, binding, call) = match param {
        Some((pat, ty)) => (
            quote!(async fn #inner(#pat: #ty) #output #body),
            quote!(#service),
            quote!(#inner(#service).await),
        ),
        None => (
            quote!(async fn #inner() #output #body),
            quote!(_),
            quote!(#inner().await),
        ),
    };
    // The `SetupResult` check is spanned at the return type, so an
    // unsupported one is reported there.
    let result = match &output {
        ReturnType::Default => quote!(#krate::__private::setup_result(#call)),
        ReturnType::Type(_, ty) => quote_spanned! {ty.span()=>
            <#ty as #krate::__private::SetupResult>::into_result(#call)
        },
    };
    let uses = uses.iter().map(|(method, value)| {
        let method = Ident::new(method, value.span());
        quote!(.#method(#value))
    });
    let capacity = subscription_capacity.map(|n| quote!(.subscription_capacity(#n)));
    let setup = quote! {
        |#binding: #krate::__private::Service| async move { #result }
    };
    quote! {
        #(#attrs)*
        #vis fn main() -> ::std::process::ExitCode {
            #inner_fn
            #krate::__private::run(
                #krate::__private::with_crate_version(
                    #krate::__private::Options::new().nats(#nats)#(#uses)*#capacity,
                    ::core::option_env!("CARGO_PKG_VERSION"),
                ),
                #krate::__private::collected_routes(),
                #setup,
            )
        }
    }
}

/// On error: the errors, the user's code kept as an ordinary function (so
/// the IDE still analyses it), and a stub `main` (so there is no "`main`
/// not found" error on top).
fn fallback(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    let kept = match syn::parse2::<Function>(item.clone()) {
        Ok(mut func) if func.sig.ident == "main" => {
            func.sig.ident = syn::Ident::new("__telestion_main", func.sig.ident.span());
            quote!(#[allow(dead_code)] #func)
        }
        Ok(func) => func.into_token_stream(),
        Err(_) => item,
    };
    quote! {
        #error
        #kept
        fn main() {}
    }
}

/// A function with a syntax error in its signature, unchanged but for its
/// name (an `async fn main` would be an error of its own), after the
/// argument errors, and a stub `main`, as in [`fallback`].
fn passed_through(errors: Errors, item: TokenStream) -> TokenStream {
    let error = errors.finish().err().map(|e| e.to_compile_error());
    let mut after_fn = false;
    let renamed: TokenStream = item
        .into_iter()
        .map(|token| {
            let is_fn = matches!(&token, TokenTree::Ident(ident) if ident == "fn");
            let token = match token {
                TokenTree::Ident(ident) if after_fn && ident == "main" => {
                    TokenTree::Ident(Ident::new("__telestion_main", ident.span()))
                }
                other => other,
            };
            after_fn = is_fn;
            token
        })
        .collect();
    quote! {
        #error
        #[allow(dead_code)]
        #renamed
        fn main() {}
    }
}

/// The tokens that name an item (for errors about the item as a whole).
fn item_head(item: &Item) -> TokenStream {
    match item {
        Item::Struct(item) => head(&item.struct_token, &item.ident),
        Item::Enum(item) => head(&item.enum_token, &item.ident),
        Item::Static(item) => head(&item.static_token, &item.ident),
        Item::Const(item) => head(&item.const_token, &item.ident),
        Item::Mod(item) => head(&item.mod_token, &item.ident),
        Item::Trait(item) => head(&item.trait_token, &item.ident),
        Item::Type(item) => head(&item.type_token, &item.ident),
        Item::Impl(item) => head(&item.impl_token, &item.self_ty),
        other => other.into_token_stream(),
    }
}

fn head(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
    quote!(#keyword #name)
}
