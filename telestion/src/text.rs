//! Text that leaves the service (error replies, headers, log lines, the
//! statistics' last error): bounded, so that an echo of hostile input (a
//! 1 MB JSON key in a decoder's error, say) cannot make a reply too large to
//! send or a log line of a megabyte, and on one line where a header needs it.

use std::borrow::Cow;

/// The longest error text sent or logged, in bytes (before the marker).
pub(crate) const MAX_ERROR_TEXT: usize = 1024;

/// How much of each end of a longer text is kept.
const KEPT_EACH_END: usize = 256;

/// `text` when it is at most [`MAX_ERROR_TEXT`] bytes long; otherwise its
/// first and last 256 bytes around a marker that says how much was cut
/// (`… [1048000 bytes cut] …`), so both the start of a message and its end
/// (a decoder's "expected ..." and position) stay readable.
pub(crate) fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_ERROR_TEXT {
        return Cow::Borrowed(text);
    }
    let head_end = floor_char_boundary(text, KEPT_EACH_END);
    let tail_start = ceil_char_boundary(text, text.len() - KEPT_EACH_END);
    Cow::Owned(format!(
        "{} … [{} bytes cut] … {}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    ))
}

/// `text` with control characters (line breaks among them) replaced by
/// spaces: a header value, which cannot hold line breaks.
pub(crate) fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept() {
        assert!(matches!(bounded("invalid JSON body"), Cow::Borrowed(_)));
        let edge = "x".repeat(MAX_ERROR_TEXT);
        assert_eq!(bounded(&edge), edge);
    }

    #[test]
    fn long_text_keeps_both_ends_and_says_what_was_cut() {
        let key = "k".repeat(1_000_000);
        let error = format!("unknown field `{key}`, expected `n` at line 1 column 1000010");
        let cut = bounded(&error);
        assert!(cut.len() < MAX_ERROR_TEXT, "{}", cut.len());
        assert!(cut.starts_with("unknown field `kkk"), "{cut}");
        assert!(
            cut.ends_with("expected `n` at line 1 column 1000010"),
            "{cut}"
        );
        let cut_bytes = error.len() - 2 * KEPT_EACH_END;
        assert!(cut.contains(&format!("[{cut_bytes} bytes cut]")), "{cut}");
    }

    #[test]
    fn cuts_on_character_boundaries() {
        let text = "é".repeat(2000);
        let cut = bounded(&text);
        assert!(cut.len() <= 2 * KEPT_EACH_END + 40, "{}", cut.len());
        assert!(cut.starts_with('é') && cut.ends_with('é'));
    }

    #[test]
    fn one_line_replaces_control_characters() {
        assert_eq!(one_line("a\r\nb\tc\0d"), "a  b c d");
        assert!(matches!(one_line("plain"), Cow::Borrowed(_)));
    }
}
