//! `Content-Length` framed JSON-RPC over byte streams, tolerant of bad input.
//!
//! lsp-server's own stdio transport ends its reader thread at the first malformed message; here a
//! frame that is not JSON, not an object or not a JSON-RPC message becomes an [`Incoming::Malformed`]
//! that the server answers with an error, and reading goes on with the next frame. Headers are
//! bounded (line length, count) and so are bodies (larger ones are skipped, not buffered).

use crossbeam_channel::{Receiver, Sender};
use lsp_server::Message;
use serde_json::Value;
use std::io::{self, BufRead, Read, Write};

/// Longest header line read; longer lines are a framing error.
const MAX_HEADER_LINE: usize = 8 * 1024;
/// Most header lines in one frame.
const MAX_HEADERS: usize = 32;
/// Largest body read; larger ones are skipped and answered with an error.
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// What the reader hands the server.
#[derive(Debug)]
pub enum Incoming {
    Message(Message),
    /// A frame that could not be read as a message: answered with `code` (JSON-RPC's parse error
    /// or invalid request) and the request id when one could be found.
    Malformed {
        id: Option<Value>,
        code: i32,
        message: String,
    },
}

/// What the writer sends: protocol messages, or raw JSON-RPC objects (error responses whose id is
/// `null` or not representable as an lsp-server `RequestId`).
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    Raw(Value),
}

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;

/// One frame from the stream: `Ok(None)` at the end of input.
pub fn read_frame(r: &mut impl BufRead) -> io::Result<Option<Incoming>> {
    let mut length: Option<usize> = None;
    let mut bad_header: Option<String> = None;
    let mut headers = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.by_ref().take(MAX_HEADER_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if line.len() > MAX_HEADER_LINE && !line.ends_with(b"\n") {
            // Skip the rest of the overlong line.
            let mut sink = Vec::new();
            r.read_until(b'\n', &mut sink)?;
            bad_header.get_or_insert_with(|| "header line too long".into());
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if headers == 0 {
                // Blank lines between frames are tolerated.
                continue;
            }
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            bad_header.get_or_insert_with(|| "too many header lines".into());
        }
        // Tolerant of garbage left before the header on the same line.
        if let Some(at) = text.to_ascii_lowercase().find("content-length:") {
            let value = text.get(at + "content-length:".len()..).unwrap_or("").trim();
            match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => bad_header = Some(format!("invalid Content-Length `{value}`")),
            }
        }
    }
    let Some(length) = length.filter(|_| bad_header.is_none()) else {
        let message = bad_header.unwrap_or_else(|| "missing Content-Length header".into());
        return Ok(Some(Incoming::Malformed { id: None, code: PARSE_ERROR, message }));
    };
    if length > MAX_BODY {
        io::copy(&mut r.by_ref().take(length as u64), &mut io::sink())?;
        return Ok(Some(Incoming::Malformed {
            id: None,
            code: INVALID_REQUEST,
            message: format!("message of {length} bytes is larger than {MAX_BODY}"),
        }));
    }
    let mut body = Vec::new();
    r.by_ref().take(length as u64).read_to_end(&mut body)?;
    if body.len() < length {
        return Ok(None);
    }
    Ok(Some(decode(&body)))
}

/// A frame's body as a message, or why it is not one.
pub fn decode(body: &[u8]) -> Incoming {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Incoming::Malformed { id: None, code: PARSE_ERROR, message: format!("parse error: {e}") },
    };
    let id = value.get("id").filter(|id| id.is_number() || id.is_string()).cloned();
    if !value.is_object() {
        return Incoming::Malformed {
            id: None,
            code: INVALID_REQUEST,
            message: "a message must be a JSON object".into(),
        };
    }
    match serde_json::from_value::<Message>(value) {
        Ok(m) => Incoming::Message(m),
        Err(e) => Incoming::Malformed { id, code: INVALID_REQUEST, message: format!("invalid request: {e}") },
    }
}

/// Writes one message with its header.
pub fn write_message(w: &mut impl Write, msg: &Outgoing) -> io::Result<()> {
    match msg {
        Outgoing::Message(m) => m.write(w),
        Outgoing::Raw(v) => {
            let text = serde_json::to_string(v)?;
            write!(w, "Content-Length: {}\r\n\r\n", text.len())?;
            w.write_all(text.as_bytes())?;
            w.flush()
        }
    }
}

/// An error response built by hand (its id may be `null`).
pub fn raw_error(id: Option<Value>, code: i32, message: &str) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(Value::Null),
        "error": { "code": code, "message": message },
    })
}

/// The reader and writer threads of a stdio connection.
pub struct IoThreads {
    writer: std::thread::JoinHandle<()>,
}

impl IoThreads {
    /// Waits until every queued message is written (the writer stops when all senders are gone).
    pub fn join(self) {
        let _ = self.writer.join();
    }
}

/// Spawns the stdio reader and writer.
pub fn stdio() -> io::Result<(Receiver<Incoming>, Sender<Outgoing>, IoThreads)> {
    let (in_tx, in_rx) = crossbeam_channel::unbounded::<Incoming>();
    let (out_tx, out_rx) = crossbeam_channel::unbounded::<Outgoing>();
    std::thread::Builder::new().name("verdict-lsp-reader".into()).spawn(move || {
        let stdin = io::stdin();
        let mut input = io::BufReader::new(stdin.lock());
        loop {
            match read_frame(&mut input) {
                Ok(Some(frame)) => {
                    let exit = matches!(&frame, Incoming::Message(Message::Notification(n)) if n.method == "exit");
                    if in_tx.send(frame).is_err() || exit {
                        return;
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    })?;
    let writer = std::thread::Builder::new().name("verdict-lsp-writer".into()).spawn(move || {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for msg in out_rx {
            if write_message(&mut out, &msg).is_err() {
                return;
            }
        }
    })?;
    Ok((in_rx, out_tx, IoThreads { writer }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<Incoming> {
        let mut r = io::BufReader::new(input);
        let mut out = Vec::new();
        while let Ok(Some(f)) = read_frame(&mut r) {
            out.push(f);
        }
        out
    }

    fn frame(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn malformed_frames_do_not_stop_reading() {
        let input = [
            frame("{not json"),
            "Content-Length: abc\r\n\r\n".to_owned(),
            frame("[1, 2]"),
            frame(r#"{"jsonrpc": "2.0", "id": 7, "method": 5}"#),
            "\r\n".to_owned(),
            frame(r#"{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}"#),
        ]
        .concat();
        let got = frames(input.as_bytes());
        let kinds: Vec<String> = got
            .iter()
            .map(|f| match f {
                Incoming::Message(m) => format!("message {m:?}").chars().take(20).collect(),
                Incoming::Malformed { id, code, .. } => format!("malformed {code} {id:?}"),
            })
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert!(kinds.first().is_some_and(|k| k == "malformed -32700 None"), "{kinds:?}");
        assert!(kinds.get(1).is_some_and(|k| k == "malformed -32700 None"), "{kinds:?}");
        assert!(kinds.get(2).is_some_and(|k| k == "malformed -32600 None"), "{kinds:?}");
        assert!(kinds.get(3).is_some_and(|k| k == "malformed -32600 Some(Number(7))"), "{kinds:?}");
        assert!(matches!(got.get(4), Some(Incoming::Message(Message::Request(r))) if r.method == "shutdown"));
    }

    #[test]
    fn truncated_input_ends_cleanly() {
        assert!(frames(b"Content-Length: 100\r\n\r\n{\"a\":").is_empty());
        assert!(frames(b"Content-Len").len() <= 1);
    }
}
