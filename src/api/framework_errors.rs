//! The HTTP framework's own refusals, in otpd's error shape. actix-http answers a request it
//! cannot parse (400), headers that never finish (408) and headers too large (431) itself,
//! with an empty body, before any of otpd's code runs, and closes the connection after. A
//! connection's stream is wrapped (`JsonRefusals`): such an answer, always the last bytes
//! written on it, is rewritten with the JSON body of the one error shape. otpd's own answers
//! always have a body, so no answer of otpd's is taken for one.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The framework's bodiless refusals: status, error code, message.
const REFUSALS: &[(&str, &str, &str)] = &[
    (
        "400",
        "invalid_request",
        "The request is not valid HTTP/1.1: a malformed request line or header (a control character, a bad Content-Length, both Content-Length and Transfer-Encoding). Nothing was done; fix the request and send it on a new connection.",
    ),
    (
        "408",
        "request_timeout",
        "The request's headers did not arrive in time. Nothing was done; send the whole request on a new connection.",
    ),
    (
        "431",
        "request_header_fields_too_large",
        "The request's headers are too large. Nothing was done; send smaller headers on a new connection.",
    ),
];

/// `written` with a bodiless framework refusal at its end given the JSON body, or `None`
/// when it ends with no such refusal.
pub fn with_json_body(written: &[u8]) -> Option<Vec<u8>> {
    // Every write passes here: an answer with a body (all of otpd's) ends otherwise, and is
    // let through without a scan.
    if !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = find_last(written, b"HTTP/1.1 ")?;
    let head = &written[start..];
    if !head.ends_with(b"\r\n\r\n") || find_last(head, b"\r\ncontent-length: 0\r\n").is_none() {
        return None;
    }
    let status = head.get(9..12)?;
    let (_, code, message) = REFUSALS
        .iter()
        .find(|(refused, _, _)| refused.as_bytes() == status)?;
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let head = String::from_utf8_lossy(&head[..head.len() - 2]).replace(
        "\r\ncontent-length: 0\r\n",
        &format!(
            "\r\ncontent-length: {}\r\ncontent-type: application/json\r\n",
            body.len()
        ),
    );
    let mut rewritten = written[..start].to_vec();
    rewritten.extend_from_slice(head.as_bytes());
    rewritten.extend_from_slice(b"\r\n");
    rewritten.extend_from_slice(body.as_bytes());
    Some(rewritten)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .rposition(|window| window == needle)
}

/// A connection's stream whose framework refusals go out with the JSON body.
pub struct JsonRefusals<T> {
    inner: T,
    /// A rewritten refusal not yet written whole, how much of it is, and how many bytes of
    /// the framework's buffer it stands for (reported written once it is all out, so the
    /// framework keeps waiting for the stream meanwhile).
    pending: Vec<u8>,
    sent: usize,
    stands_for: usize,
}

impl<T> JsonRefusals<T> {
    pub fn new(inner: T) -> Self {
        JsonRefusals {
            inner,
            pending: Vec::new(),
            sent: 0,
            stands_for: 0,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite + Unpin> JsonRefusals<T> {
    /// Writes what is left of a rewritten refusal.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let written =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += written;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // `stands_for` is still set when a flush wrote the refusal out before the framework
        // offered its buffer again: the buffer is written, and is not rewritten twice.
        if this.pending.is_empty() && this.stands_for == 0 {
            match with_json_body(buf) {
                Some(rewritten) => {
                    this.pending = rewritten;
                    this.stands_for = buf.len();
                }
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // A rewritten refusal is being written: the framework offers the same buffer again
        // until it is told the buffer is written, which it is once the refusal is all out.
        ready!(this.poll_drain(cx))?;
        Poll::Ready(Ok(std::mem::take(&mut this.stands_for)))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSAL: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: Thu, 03 Dec 2026 22:44:33 GMT\r\n\r\n";

    #[test]
    fn a_bodiless_refusal_gets_the_json_body_and_its_length() {
        let rewritten = String::from_utf8(with_json_body(REFUSAL).unwrap()).unwrap();
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "invalid_request");
    }

    #[test]
    fn earlier_answers_in_the_same_write_are_kept_as_they_were() {
        let earlier = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let written = [&earlier[..], REFUSAL].concat();
        let rewritten = with_json_body(&written).unwrap();
        assert!(rewritten.starts_with(earlier));
        assert!(rewritten.ends_with(b"}}"));
    }

    #[test]
    fn answers_with_a_body_or_another_status_pass_as_they_are() {
        for written in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 9\r\n\r\n{\"a\":\"b\"}"[..],
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"a\": 1}",
        ] {
            assert_eq!(
                with_json_body(written),
                None,
                "{}",
                String::from_utf8_lossy(written)
            );
        }
    }

    #[tokio::test]
    async fn a_full_stream_holds_the_framework_back_until_the_refusal_is_all_out() {
        use std::future::poll_fn;
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(16);
        let mut wrapped = JsonRefusals::new(server);
        // The stream takes 16 bytes, then waits for the client to read.
        let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut wrapped).poll_write(cx, REFUSAL))).await;
        assert!(first.is_pending(), "told written while most of it was not");
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.unwrap();
            received
        });
        let taken = poll_fn(|cx| Pin::new(&mut wrapped).poll_write(cx, REFUSAL))
            .await
            .unwrap();
        assert_eq!(taken, REFUSAL.len());
        drop(wrapped);
        assert_eq!(Some(reader.await.unwrap()), with_json_body(REFUSAL));
    }

    #[tokio::test]
    async fn the_stream_writes_the_rewritten_refusal_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(16);
        let mut wrapped = JsonRefusals::new(server);
        let writer = tokio::spawn(async move {
            let taken = wrapped.write(REFUSAL).await.unwrap();
            assert_eq!(taken, REFUSAL.len());
            wrapped.shutdown().await.unwrap();
        });
        let mut received = Vec::new();
        let mut client = client;
        client.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        assert_eq!(Some(received), with_json_body(REFUSAL));
    }
}
