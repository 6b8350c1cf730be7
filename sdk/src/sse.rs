//! Server-sent events, parsed from a byte stream as they arrive.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::{Error, Result};

/// The events of a streamed AI reply, in order, as they arrive.
pub type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent>> + Send>>;

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (Anthropic names its events; OpenAI does not).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Turns a byte stream into events; chunks may split anywhere.
pub(crate) fn events(
    bytes: impl Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
) -> impl Stream<Item = Result<SseEvent>> + Send {
    futures_util::stream::unfold((bytes, Parser::default(), false), |(mut bytes, mut parser, done)| async move {
        loop {
            if let Some(event) = parser.next_event() {
                return Some((Ok(event), (bytes, parser, done)));
            }
            if done {
                return None;
            }
            match bytes.next().await {
                Some(Ok(chunk)) => parser.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(Error::Network(e)), (bytes, parser, true))),
                None => {
                    // A final event without its blank line still counts.
                    parser.buf.extend_from_slice(b"\n\n");
                    return parser.next_event().map(|e| (Ok(e), (bytes, parser, true)));
                }
            }
        }
    })
}

#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    /// The next complete event in the buffer, skipping blocks that carry no data.
    fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let (end, sep) = find_blank_line(&self.buf)?;
            let block: Vec<u8> = self.buf.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&block[..end]);
            let mut event = SseEvent::default();
            let mut data = Vec::new();
            for line in text.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = Some(value.to_owned()),
                    "data" => data.push(value.to_owned()),
                    _ => {}
                }
            }
            if !data.is_empty() {
                event.data = data.join("\n");
                return Some(event);
            }
        }
    }
}

/// Position and length of the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            Some((i, 2))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_split_anywhere() {
        let wire = "event: message_start\ndata: {\"a\":1}\n\n: comment\n\ndata: x\ndata: y\r\n\r\ndata: [DONE]\n\n";
        for cut in 0..wire.len() {
            let (a, b) = wire.as_bytes().split_at(cut);
            let chunks: Vec<reqwest::Result<Bytes>> =
                vec![Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))];
            let got: Vec<_> = events(futures_util::stream::iter(chunks)).map(|e| e.unwrap()).collect().await;
            assert_eq!(got.len(), 3, "cut at {cut}: {got:?}");
            assert_eq!(got[0].event.as_deref(), Some("message_start"));
            assert_eq!(got[0].data, "{\"a\":1}");
            assert_eq!(got[1].data, "x\ny");
            assert_eq!(got[2].data, "[DONE]");
        }
    }
}
