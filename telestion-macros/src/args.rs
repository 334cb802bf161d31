//! Attribute arguments shared by both macros: a comma-separated list of
//! positional literals and `key = value` pairs, plus an error collector.
//!
//! Parsing is deliberately loose (any expression as a value) so that every
//! mistake is reported by the macro with a message that says what to write,
//! instead of a bare syntax error from `syn`.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Error, Expr, ExprLit, Ident, Lit, LitBool, LitInt, LitStr, Path, Token};

/// One argument as written.
pub(crate) enum Arg {
    /// A value without a key, e.g. the subject literal `"a.b"`.
    Positional(Expr),
    /// `key = value`; `key` may be a keyword such as `crate`.
    Named { key: Ident, value: Expr },
}

/// The whole argument list.
pub(crate) struct Args(pub(crate) Vec<Arg>);

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Args> {
        let args = Punctuated::<Arg, Token![,]>::parse_terminated(input)?;
        Ok(Args(args.into_iter().collect()))
    }
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Arg> {
        if input.peek(Ident::peek_any) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let key = Ident::parse_any(input)?;
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            Ok(Arg::Named { key, value })
        } else {
            Ok(Arg::Positional(input.parse()?))
        }
    }
}

/// Collects errors so that all of them are reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(
        &mut self,
        tokens: impl quote::ToTokens,
        message: impl std::fmt::Display,
    ) {
        self.push(Error::new_spanned(tokens, message));
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(Error::new(span, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, attrs }) if attrs.is_empty() => Some(lit),
        _ => None,
    }
}

/// The expression as a string literal.
pub(crate) fn lit_str(expr: &Expr) -> Option<&LitStr> {
    match literal(expr)? {
        Lit::Str(lit) => Some(lit),
        _ => None,
    }
}

/// The expression as a bool literal.
pub(crate) fn lit_bool(expr: &Expr) -> Option<&LitBool> {
    match literal(expr)? {
        Lit::Bool(lit) => Some(lit),
        _ => None,
    }
}

/// The expression as an integer literal.
pub(crate) fn lit_int(expr: &Expr) -> Option<&LitInt> {
    match literal(expr)? {
        Lit::Int(lit) => Some(lit),
        _ => None,
    }
}

/// `crate = "path"`: the path under which generated code reaches the
/// `telestion` crate (default `::telestion`).
pub(crate) fn crate_path(value: &Expr, errors: &mut Errors) -> Option<Path> {
    let Some(lit) = lit_str(value) else {
        errors.spanned(
            value,
            "`crate` takes the path of the telestion crate as a string; write \
             `crate = \"::my_telestion\"`",
        );
        return None;
    };
    match lit.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.spanned(
                lit,
                format!(
                    "`{}` is not a path; write the name the telestion crate has in this \
                     crate, e.g. `crate = \"::my_telestion\"`",
                    lit.value()
                ),
            );
            None
        }
    }
}

/// The default crate path, `::telestion`.
pub(crate) fn default_crate() -> Path {
    syn::parse_quote!(::telestion)
}

/// Reports `key` when it was already given; otherwise remembers it.
pub(crate) fn check_duplicate(seen: &mut Vec<String>, key: &Ident, errors: &mut Errors) -> bool {
    let name = key.unraw().to_string();
    if seen.contains(&name) {
        errors.spanned(
            key,
            format!("duplicate argument `{name}`; give each argument at most once"),
        );
        true
    } else {
        seen.push(name);
        false
    }
}

/// The tokens of an argument (errors about the argument as a whole span
/// all of them).
pub(crate) fn arg_tokens(arg: &Arg) -> proc_macro2::TokenStream {
    match arg {
        Arg::Positional(expr) => quote::quote!(#expr),
        Arg::Named { key, value } => quote::quote!(#key = #value),
    }
}
