//! The one neutraliser for text a person reads: every surface that shows agent-supplied text (log
//! lines on the console and in `assegai logs`, the approve card, tables, agent names and manifest
//! strings, error messages that quote the agent or a node) goes through here.
//!
//! Agents are untrusted: a log line must not be able to move the cursor, recolour the screen,
//! fake a second line, reorder what is shown (bidi controls), or hide text (zero-width and other
//! invisible characters: `alice\u{200b}\u{202e}` must not read as `alice`). [`neutralize`] replaces
//! every such code point ([`is_refused`]) by a visible escape, so the text stays readable but
//! inert; [`to_json_string`] and [`to_json_string_pretty`] write the same code points as `\u`
//! escapes, so `--json` output is still the exact data but just as inert on a terminal.
//!
//! What is refused: C0 and C1 controls and DEL (so every ESC sequence), Unicode general categories
//! `Cf` (format: bidi controls, zero-width characters, the BOM, invisible operators, tag
//! characters…), `Zl` and `Zp` (line and paragraph separators), and the rest of Unicode's
//! default-ignorable code points, which render as nothing: the Hangul and halfwidth fillers,
//! combining grapheme joiner, variation selectors (which can smuggle hidden bytes), and the whole
//! tag block. This module does not decide what text is valid input; callers that refuse input do
//! so themselves and use this to quote it.

use std::{fmt::Write as _, io};

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` must never reach a terminal as itself.
pub fn is_refused(c: char) -> bool {
    match c {
        // The common case first: printable ASCII is always shown as is.
        ' '..='~' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Default-ignorable code points that are not `Cf`: they render as nothing.
        '\u{034f}'                      // combining grapheme joiner
        | '\u{115f}' | '\u{1160}'       // Hangul choseong / jungseong fillers
        | '\u{17b4}' | '\u{17b5}'       // Khmer inherent vowels
        | '\u{180b}'..='\u{180f}'       // Mongolian free variation selectors
        | '\u{3164}'                    // Hangul filler
        | '\u{fe00}'..='\u{fe0f}'       // variation selectors
        | '\u{ffa0}'                    // halfwidth Hangul filler
        | '\u{fff0}'..='\u{fff8}'       // unassigned specials
        | '\u{e0000}'..='\u{e0fff}' => true, // tags, variation selectors supplement
        c => matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::Control
        ),
    }
}

/// Returns `text` with every refused code point replaced by a visible escape: `\n` and `\r` for
/// line breaks, a space for a tab, `\xNN` for the other C0/C1 controls and DEL, `\u{NNNN}` for
/// the rest (`\u{202e}`, `\u{200b}`, `\u{e0041}`).
pub fn neutralize(text: &str) -> String {
    if !text.chars().any(is_refused) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if !is_refused(c) => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out
}

/// The first `max_chars` characters of `text` (then `…`), neutralised: for quoting agent input in
/// an error message.
pub fn quote(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => neutralize(&text[..cut]) + "…",
        None => neutralize(text),
    }
}

/// `value` as compact JSON (one line), with every refused code point in a string written as a
/// `\u` escape: the same data for a program, inert for a terminal.
pub fn to_json_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    write_json(value, Inert(CompactFormatter))
}

/// `value` as indented JSON, escaped like [`to_json_string`].
pub fn to_json_string_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    write_json(value, Inert(PrettyFormatter::new()))
}

fn write_json<T: Serialize + ?Sized, F: Formatter>(value: &T, formatter: F) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, formatter))?;
    // The serializer writes only UTF-8 (the text it was given, and ASCII escapes).
    String::from_utf8(out).map_err(|e| serde_json::Error::io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// A serde_json formatter that escapes refused code points; layout comes from the inner one.
/// serde_json escapes C0 controls, quotes and backslashes itself before a fragment gets here.
struct Inert<F>(F);

impl<F: Formatter> Formatter for Inert<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_refused(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_key(writer)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_made_inert() {
        let evil = "ok\x1b[2J\x1b[H\x1b]0;title\x07Approve? [y]\r\nfake\u{9b}31m\u{202e}gnp.exe\x7f";
        let shown = neutralize(evil);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(!shown.contains('\u{202e}'));
        assert_eq!(shown, "ok\\x1b[2J\\x1b[H\\x1b]0;title\\x07Approve? [y]\\r\\nfake\\x9b31m\\u{202e}gnp.exe\\x7f");
    }

    #[test]
    fn invisible_characters_are_shown() {
        let hidden = [
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{061c}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
            '\u{e007f}',
            '\u{3164}',
            '\u{ffa0}',
            '\u{115f}',
            '\u{1160}',
            '\u{00ad}',
            '\u{2066}',
            '\u{fe0f}',
            '\u{85}',
            '\u{e0100}',
        ];
        for c in hidden {
            assert!(is_refused(c), "U+{:04X}", u32::from(c));
            let shown = neutralize(&format!("alice{c}"));
            assert!(!shown.contains(c), "U+{:04X}: {shown:?}", u32::from(c));
            assert!(shown.starts_with("alice\\"), "{shown:?}");
        }
        assert_eq!(neutralize("alice\u{200b}\u{202e}"), "alice\\u{200b}\\u{202e}");
        assert_eq!(neutralize("\u{e0041}"), "\\u{e0041}");
        // Only controls use the short `\x` form.
        assert_eq!(neutralize("a\u{ad}b\u{85}"), "a\\u{ad}b\\x85");
    }

    #[test]
    fn quotes_are_short_and_inert() {
        assert_eq!(quote("abc", 3), "abc");
        assert_eq!(quote("abcd", 3), "abc…");
        assert_eq!(quote("a\u{202e}b", 2), "a\\u{202e}…");
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(neutralize("héllo wörld ✓ 0xabc"), "héllo wörld ✓ 0xabc");
        assert_eq!(neutralize("日本語 — “quotes” €5 😀"), "日本語 — “quotes” €5 😀");
        assert_eq!(neutralize("a\tb"), "a b");
    }

    #[test]
    fn json_escapes_what_the_neutraliser_refuses() {
        let v = serde_json::json!({"m": "a\u{9b}b\u{85}c\u{202e}d\u{e0041}é\x1b", "k\u{200b}": [1, "\u{7f}"]});
        let compact = to_json_string(&v).unwrap();
        assert!(compact.chars().all(|c| !is_refused(c)), "{compact:?}");
        assert!(compact.contains(r"a\u009bb\u0085c\u202ed\udb40\udc41é\u001b"), "{compact}");
        assert!(compact.contains(r#""k\u200b":[1,"\u007f"]"#), "{compact}");
        // The same data for a program.
        assert_eq!(serde_json::from_str::<serde_json::Value>(&compact).unwrap(), v);
        let pretty = to_json_string_pretty(&v).unwrap();
        assert_eq!(
            pretty,
            serde_json::to_string_pretty(&v)
                .unwrap()
                .replace('\u{9b}', r"\u009b")
                .replace('\u{85}', r"\u0085")
                .replace('\u{202e}', r"\u202e")
                .replace('\u{e0041}', r"\udb40\udc41")
                .replace('\u{200b}', r"\u200b")
                .replace('\u{7f}', r"\u007f")
        );
        assert_eq!(serde_json::from_str::<serde_json::Value>(&pretty).unwrap(), v);
    }
}
