//! The function under an attribute, with its body kept as tokens.
//!
//! Only the signature is parsed: the macros need nothing from the body, and
//! a syntax error in it is then reported by the compiler, as written,
//! instead of making the whole function unreadable to the macro.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Signature, Visibility};

/// A function item: attributes, visibility, signature and `{ body }`.
pub(crate) struct Function {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    /// The body, braces included, unparsed.
    pub(crate) body: Group,
}

impl Parse for Function {
    fn parse(input: ParseStream) -> syn::Result<Function> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let body: Group = input.parse()?;
        if body.delimiter() != Delimiter::Brace {
            return Err(syn::Error::new(body.span(), "expected the function body"));
        }
        Ok(Function {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl ToTokens for Function {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(self.attrs.iter().map(ToTokens::to_token_stream));
        self.vis.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        self.body.to_tokens(tokens);
    }
}

/// Whether `item`, which did not parse as a [`Function`], still is a
/// function with a body: `fn` before a final `{ ... }`. Then its signature
/// has a syntax error, which the compiler reports when the item is passed
/// through unchanged.
pub(crate) fn is_unparsable_function(item: &TokenStream) -> bool {
    let tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    let ends_in_body = matches!(
        tokens.last(),
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace
    );
    ends_in_body
        && tokens
            .iter()
            .any(|token| matches!(token, TokenTree::Ident(ident) if ident == "fn"))
}
