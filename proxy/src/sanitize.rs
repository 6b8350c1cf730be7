//! Makes agent-supplied text safe to show to a person on a terminal.
//!
//! Agents are untrusted: a log line must not be able to move the cursor, recolour the screen,
//! fake a second line, or redraw an approval prompt. Every control character (C0, DEL, C1),
//! including newlines and the escape that starts ANSI sequences, and every bidirectional override
//! is replaced by a visible escape, so the text stays readable but inert.

use std::fmt::Write;

/// Returns `text` with every control character and bidi override replaced by a visible escape
/// (`\x1b`, `\n`, `\u{202e}`).
pub fn neutralize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::neutralize;

    #[test]
    fn escapes_are_made_inert() {
        let evil = "ok\x1b[2J\x1b[H\x1b]0;title\x07Approve? [y]\r\nfake\u{9b}31m\u{202e}gnp.exe\x7f";
        let shown = neutralize(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(!shown.contains('\u{202e}'));
        assert_eq!(shown, "ok\\x1b[2J\\x1b[H\\x1b]0;title\\x07Approve? [y]\\r\\nfake\\x9b31m\\u{202e}gnp.exe\\x7f");
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(neutralize("héllo wörld ✓ 0xabc"), "héllo wörld ✓ 0xabc");
    }
}
