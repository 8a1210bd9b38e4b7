//! Serving the control API and the probes over HTTP/1.1 with the bounds a greedy or
//! hostile client meets: at most `max_connections` connections at once (the next ones
//! get a JSON `503 too_many_connections` with `Retry-After` and are closed), request
//! headers complete within `header_timeout` of the first byte (slowloris), a keep-alive
//! connection with no request in flight closed after `idle_timeout`, and request heads
//! bounded in size and header count (hyper answers `431` or `400` and closes).
//!
//! A connection with a response in flight (an SSE stream, however long) is never idle.
//! On shutdown the listener stops accepting, every connection finishes the request in
//! flight and closes, and [`serve`] returns once all are gone.

use super::Capacity;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::Instant;

/// Largest request head (request line and headers) read into memory.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;
/// `Retry-After` of a refused connection, in seconds.
const RETRY_CONNECTION: u32 = 1;

/// Serves `app` on `listener` until `stop` is set, then drains the connections.
pub async fn serve<L>(mut listener: L, app: Router, limits: Capacity, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // As many excess connections again are answered `503` (each for at most
    // `header_timeout`); beyond those, an excess connection is closed unanswered.
    let refusals = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection holds a sender: once all are dropped, the drain is over.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            _ = crate::stop::stopped(&mut stop) => break,
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let conn = Connection {
                    app: app.clone(),
                    limits: limits.clone(),
                    stop: stop.clone(),
                    _permit: permit,
                    _open: open_tx.clone(),
                };
                tokio::spawn(conn.run(io));
            }
            Err(_) => match refusals.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::warn!(
                        limit = limits.max_connections,
                        "control connection refused: too many connections"
                    );
                    tokio::spawn(refuse(io, limits.header_timeout, permit));
                }
                Err(_) => drop(io),
            },
        }
    }
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// One accepted connection and what it holds until it closes.
struct Connection {
    app: Router,
    limits: Capacity,
    stop: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _open: mpsc::Sender<()>,
}

impl Connection {
    async fn run<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: io,
            activity: activity.clone(),
        });
        let (app, act) = (self.app.clone(), activity.clone());
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (mut app, act) = (app.clone(), act.clone());
            act.begin();
            async move {
                let response = tower_service::Service::call(&mut app, req).await?;
                Ok::<_, std::convert::Infallible>(hold(response, Busy(act)))
            }
        });
        let conn = builder().serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        loop {
            let deadline = activity.deadline(&self.limits);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "control connection ended with an error");
                    }
                    return;
                }
                _ = crate::stop::stopped(&mut self.stop), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = activity.changed.notified() => {}
                _ = sleep_until(deadline) => {
                    if activity.deadline(&self.limits).is_some_and(|d| d <= Instant::now()) {
                        tracing::debug!("control connection closed: idle, or its request head too slow");
                        return;
                    }
                }
            }
        }
    }
}

fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        // The connection's own deadlines apply; hyper's would also close an idle
        // keep-alive connection after the header bound.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    b
}

/// Answers one request on an excess connection with `503` and closes it.
async fn refuse<I>(io: I, header_timeout: std::time::Duration, _permit: tokio::sync::OwnedSemaphorePermit)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
        let failure = super::control::ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the daemon has as many control connections as limits.max_connections allows",
        )
        .retry_after(RETRY_CONNECTION);
        let mut response = axum::response::IntoResponse::into_response(failure);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let mut b = builder();
    b.keep_alive(false);
    let conn = b.serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(header_timeout, conn).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, for its deadlines.
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when a deadline may have moved.
    changed: Notify,
}

struct ActivityState {
    /// Requests whose response has not been sent (or dropped) yet.
    in_flight: usize,
    /// When the connection last had nothing in flight.
    idle_since: Instant,
    /// The first byte received since then: a request head is on its way.
    head_since: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().expect("activity lock")
    }

    /// When the connection is to be closed: `None` while a request is in flight.
    fn deadline(&self, limits: &Capacity) -> Option<Instant> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.head_since {
            Some(t) => t + limits.header_timeout,
            None => s.idle_since + limits.idle_timeout,
        })
    }

    fn received(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A request's head has been read.
    fn begin(&self) {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_since = None;
        drop(s);
        self.changed.notify_one();
    }

    /// A response has been sent or dropped.
    fn end(&self) {
        let mut s = self.lock();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.changed.notify_one();
    }
}

/// Marks a request in flight until dropped (with its response body).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// `response` with `guard` kept until its body has been sent or dropped (a request in
/// flight, an SSE stream's place under `limits.max_streams`).
pub(crate) fn hold<G: Send + Unpin + 'static>(response: Response<Body>, guard: G) -> Response<Body> {
    response.map(|inner| Body::new(Guarded { inner, _guard: guard }))
}

/// A response body and what it keeps until it is sent or dropped.
struct Guarded<G> {
    inner: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> http_body::Body for Guarded<G> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's IO, telling [`Activity`] when bytes arrive.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
