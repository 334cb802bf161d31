//! Attribute macros for `telestion` (placeholder; see the macros issue).
use proc_macro::TokenStream;

/// `#[telestion::service]` on `async fn main`.
#[proc_macro_attribute]
pub fn service(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// `#[subscribe("subject")]` on a handler.
#[proc_macro_attribute]
pub fn subscribe(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
