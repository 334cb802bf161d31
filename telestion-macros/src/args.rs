//! Attribute arguments shared by both macros: a comma-separated list of
//! positional literals and `key = value` pairs, read through a table with
//! one parse function per key ([`Spec`]), plus an error collector.
//!
//! Parsing is deliberately loose (any expression as a value) so that every
//! mistake is reported by the macro with a message that says what to write,
//! instead of a bare syntax error from `syn`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Error, Expr, ExprLit, Ident, Lit, LitBool, LitInt, LitStr, Path, Token};

/// One argument as written.
enum Arg {
    /// A value without a key, e.g. the subject literal `"a.b"`.
    Positional(Expr),
    /// `key = value`; `key` may be a keyword such as `crate`.
    Named { key: Ident, value: Expr },
}

/// The whole argument list.
struct Args(Vec<Arg>);

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

/// How a macro reads its arguments: the positional argument, if it takes
/// one, and one parse function per key. The list of valid arguments in
/// the error for an unknown one is made from the same table.
pub(crate) struct Spec<T: 'static> {
    /// The positional argument, if any.
    pub(crate) positional: Option<Positional<T>>,
    /// The `key = value` arguments.
    pub(crate) keys: &'static [Key<T>],
    /// The keys that may also be written alone, meaning `key = true`
    /// (e.g. `durable`).
    pub(crate) flags: &'static [&'static str],
}

/// A positional argument (e.g. the subject literal).
pub(crate) struct Positional<T> {
    /// How it is written, for the list of valid arguments.
    pub(crate) usage: &'static str,
    /// Reads it into the arguments, or reports what is wrong.
    pub(crate) parse: fn(&mut T, &Expr, &mut Errors),
}

/// A `key = value` argument.
pub(crate) struct Key<T> {
    /// The key.
    pub(crate) name: &'static str,
    /// How it is written, for the list of valid arguments.
    pub(crate) usage: &'static str,
    /// Reads the value into the arguments, or reports what is wrong; gets
    /// the key too, for errors about the argument as a whole.
    pub(crate) parse: fn(&mut T, &Ident, &Expr, &mut Errors),
}

impl<T> Spec<T> {
    /// Parses `tokens` into `target`, reporting every mistake (unknown,
    /// duplicate and malformed arguments). `false` when the tokens are not
    /// an argument list at all.
    pub(crate) fn parse(&self, tokens: TokenStream, target: &mut T, errors: &mut Errors) -> bool {
        let parsed = match syn::parse2::<Args>(tokens) {
            Ok(parsed) => parsed,
            Err(error) => {
                errors.push(error);
                return false;
            }
        };
        let mut seen = Vec::new();
        for arg in &parsed.0 {
            match arg {
                Arg::Named { key, value } => {
                    let name = key.unraw().to_string();
                    let Some(spec) = self.keys.iter().find(|spec| spec.name == name) else {
                        errors.spanned(
                            key,
                            format!(
                                "unknown argument `{name}`; the valid arguments are {}",
                                self.valid()
                            ),
                        );
                        continue;
                    };
                    if seen.contains(&spec.name) {
                        errors.spanned(
                            key,
                            format!("duplicate argument `{name}`; give each argument at most once"),
                        );
                        continue;
                    }
                    seen.push(spec.name);
                    (spec.parse)(target, key, value, errors);
                }
                Arg::Positional(Expr::Path(path))
                    if path
                        .path
                        .get_ident()
                        .is_some_and(|ident| self.flags.iter().any(|flag| ident == flag)) =>
                {
                    let Some(key) = path.path.get_ident() else {
                        continue;
                    };
                    let name = key.to_string();
                    let Some(spec) = self.keys.iter().find(|spec| spec.name == name) else {
                        continue;
                    };
                    if seen.contains(&spec.name) {
                        errors.spanned(
                            key,
                            format!("duplicate argument `{name}`; give each argument at most once"),
                        );
                        continue;
                    }
                    seen.push(spec.name);
                    let value: Expr = syn::parse_quote_spanned!(key.span()=> true);
                    (spec.parse)(target, key, &value, errors);
                }
                Arg::Positional(Expr::Path(path)) if path.path.get_ident().is_some() => {
                    errors.spanned(
                        path,
                        format!(
                            "unknown argument `{}`; the valid arguments are {}",
                            path.to_token_stream(),
                            self.valid()
                        ),
                    );
                }
                Arg::Positional(expr) => match &self.positional {
                    Some(positional) => (positional.parse)(target, expr, errors),
                    None => errors.spanned(
                        expr,
                        format!(
                            "unexpected argument; the valid arguments are {}",
                            self.valid()
                        ),
                    ),
                },
            }
        }
        true
    }

    /// The valid arguments, e.g. "`a = 1`, `b = true` and `c = \"x\"`".
    fn valid(&self) -> String {
        let usages: Vec<&str> = self
            .positional
            .iter()
            .map(|positional| positional.usage)
            .chain(self.keys.iter().map(|key| key.usage))
            .collect();
        match usages.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => "none".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::{Expr, Ident};

    use super::{Errors, Key, Spec};

    /// Which keys were parsed, in order.
    type Seen = Vec<&'static str>;

    fn a(seen: &mut Seen, _: &Ident, _: &Expr, _: &mut Errors) {
        seen.push("a");
    }

    fn b(seen: &mut Seen, _: &Ident, _: &Expr, _: &mut Errors) {
        seen.push("b");
    }

    const SPEC: Spec<Seen> = Spec {
        positional: None,
        flags: &[],
        keys: &[
            Key {
                name: "a",
                usage: "`a = 1`",
                parse: a,
            },
            Key {
                name: "b",
                usage: "`b = true`",
                parse: b,
            },
        ],
    };

    fn parse(tokens: proc_macro2::TokenStream) -> (Seen, String) {
        let mut seen = Seen::new();
        let mut errors = Errors::default();
        assert!(SPEC.parse(tokens, &mut seen, &mut errors));
        let errors = match errors.finish() {
            Ok(()) => String::new(),
            Err(error) => error.into_iter().map(|e| format!("{e}\n")).collect(),
        };
        (seen, errors)
    }

    #[test]
    fn each_key_goes_to_its_parse_function() {
        assert_eq!(parse(quote!(b = 2, a = 1)), (vec!["b", "a"], String::new()));
    }

    #[test]
    fn unknown_duplicate_and_positional_arguments_are_reported() {
        let (seen, errors) = parse(quote!(a = 1, c = 3, a = 2, flag, "x"));
        assert_eq!(seen, ["a"]);
        assert_eq!(
            errors,
            "unknown argument `c`; the valid arguments are `a = 1` and `b = true`\n\
             duplicate argument `a`; give each argument at most once\n\
             unknown argument `flag`; the valid arguments are `a = 1` and `b = true`\n\
             unexpected argument; the valid arguments are `a = 1` and `b = true`\n"
        );
    }
}
