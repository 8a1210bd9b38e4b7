//! The websocket's HTTP/1.1 upgrade (RFC 6455 §4.1), done here rather than by
//! tungstenite's client handshake: that one hands its 4 KiB response buffer on as the
//! socket's read buffer for the socket's whole life — 4 KiB in each of 10 000 idle
//! chats. Here the answer is read into a buffer dropped at the end, whatever followed it
//! is given back to the stream (read ahead), and the socket starts with tungstenite's
//! small read buffer. The request's query (its credentials) is sent, never logged or put
//! into an error.

use super::dial::{Stream, Ws};
use super::SocketError;
use crate::secret::PresignedUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// The longest answer head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Header fields parsed in an answer.
const MAX_HEADERS: usize = 64;

/// Sends the upgrade request for `url` over `stream`, checks the `101` answer, and
/// starts the websocket.
pub(super) async fn upgrade(
    mut stream: Stream,
    url: &PresignedUrl,
    config: WebSocketConfig,
) -> Result<Ws, SocketError> {
    let (request, key) = request(url)?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| SocketError::Dial(format!("sending the upgrade request: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| SocketError::Dial(format!("sending the upgrade request: {e}")))?;
    drop(request);
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() >= MAX_HEAD {
            return Err(SocketError::Dial(format!(
                "the upgrade answer's head is over {MAX_HEAD} bytes"
            )));
        }
        head.reserve(1024);
        let n = stream
            .read_buf(&mut head)
            .await
            .map_err(|e| SocketError::Dial(format!("reading the upgrade answer: {e}")))?;
        if n == 0 {
            return Err(SocketError::Dial(
                "the connection closed before the upgrade answer".into(),
            ));
        }
    };
    check_answer(&head[..end], &key)?;
    stream.give_back(&head[end..]);
    drop(head);
    Ok(WebSocketStream::from_raw_socket(stream, Role::Client, Some(config)).await)
}

/// The request (as tungstenite would write it) and its `Sec-WebSocket-Key`.
fn request(url: &PresignedUrl) -> Result<(String, String), SocketError> {
    let uri: axum::http::Uri = url
        .expose()
        .parse()
        .map_err(|_| SocketError::Dial("the websocket URL is not a valid request target".into()))?;
    let authority = uri
        .authority()
        .ok_or_else(|| SocketError::Dial("the URL has no host".into()))?;
    // The Host header is the authority without any user information.
    let host = authority.as_str().rsplit('@').next().unwrap_or_default();
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let key = generate_key();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    Ok((request, key))
}

/// A `101 Switching Protocols` with `Upgrade: websocket`, `Connection: Upgrade` and the
/// `Sec-WebSocket-Accept` our key calls for; any other status is a refusal.
fn check_answer(head: &[u8], key: &str) -> Result<(), SocketError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    match answer.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(SocketError::Dial(
                "the upgrade answer's head is incomplete".into(),
            ))
        }
        Err(e) => return Err(SocketError::Dial(format!("the upgrade answer is not HTTP: {e}"))),
    }
    let status = answer.code.unwrap_or(0);
    if status != 101 {
        return Err(SocketError::Refused(status));
    }
    let field = |name: &str| {
        answer
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect::<Vec<_>>()
    };
    if !field("upgrade")
        .iter()
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
    {
        return Err(SocketError::Dial(
            "the upgrade answer has no Upgrade: websocket".into(),
        ));
    }
    let connection_upgrade = field("connection")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return Err(SocketError::Dial(
            "the upgrade answer has no Connection: Upgrade".into(),
        ));
    }
    let expected = derive_accept_key(key.as_bytes());
    if field("sec-websocket-accept")
        .iter()
        .map(|v| v.trim())
        .ne([expected.as_str()])
    {
        return Err(SocketError::Dial(
            "the upgrade answer's Sec-WebSocket-Accept does not match our key".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &str, extra: &str, key: &str) -> Vec<u8> {
        let accept = derive_accept_key(key.as_bytes());
        format!("HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n")
            .into_bytes()
    }

    #[test]
    fn the_answer_is_checked() {
        let key = generate_key();
        assert!(check_answer(&answer("101 Switching Protocols", "", &key), &key).is_ok());
        assert!(matches!(
            check_answer(&answer("403 Forbidden", "", &key), &key),
            Err(SocketError::Refused(403))
        ));
        let other = generate_key();
        let wrong = check_answer(&answer("101 Switching Protocols", "", &other), &key);
        assert!(matches!(wrong, Err(SocketError::Dial(m)) if m.contains("Sec-WebSocket-Accept")));
        let no_upgrade = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
        assert!(
            matches!(check_answer(no_upgrade, &key), Err(SocketError::Dial(m)) if m.contains("Upgrade: websocket"))
        );
        assert!(matches!(
            check_answer(b"SSH-2.0\r\n\r\n", &key),
            Err(SocketError::Dial(_))
        ));
    }

    #[test]
    fn the_request_targets_the_path_and_query_and_never_says_them_in_an_error() {
        let url = PresignedUrl::new("wss://user@example.com:8443/connect?X-Amz-Signature=secret");
        let (req, key) = request(&url).unwrap();
        assert!(req.starts_with("GET /connect?X-Amz-Signature=secret HTTP/1.1\r\nHost: example.com:8443\r\n"));
        assert!(req.contains(&format!("Sec-WebSocket-Key: {key}\r\n")));
        let bad = request(&PresignedUrl::new("wss://exa mple.com/?X-Amz-Signature=secret"));
        assert!(!format!("{:?}", bad.unwrap_err()).contains("secret"));
    }
}
