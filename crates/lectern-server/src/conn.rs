//! One HTTP/1.1 connection, guarded in front of hyper: request heads are checked before hyper
//! parses them, and a connection that sends nothing is closed.
//!
//! hyper answers a request head it cannot take (a URI over 64 KiB, too many or too large
//! headers, a bad `Content-Length`) with a bare status of its own: no body, no `x-request-id`,
//! and no hook to change that. So [`guard`] wraps the connection's IO: each head is held back
//! until it is complete and checked with `httparse` against Lectern's own, lower limits
//! ([`MAX_URI_BYTES`], [`MAX_HEADERS`], [`MAX_HEAD_BYTES`]) and framing rules (every head hyper
//! would refuse is refused here first). A refused head never reaches hyper: hyper is handed a
//! stand-in request (`connection: close`) that the [`GuardedService`] answers with the JSON error
//! and a request id, in order after the responses before it, and the connection then closes.
//! Bodies pass through unchanged; their framing (`Content-Length` or chunked) is followed only
//! to know where the next head starts.
//!
//! The same wrapper keeps the time limits: a head must arrive whole within
//! [`Timeouts::header_read`] of its first byte (of the connection's start for the first one),
//! and a connection with no request in flight is closed after [`Timeouts::idle`].
//!
//! A request answered before its body was read to the end (a 404 for an upload to an unknown
//! model, a 413 by `Content-Length`) gets `connection: close`: hyper reads what is left of such
//! a body only once and otherwise closes the connection after the answer, and without the
//! header a client would send its next request on a connection about to close. The closing
//! side then lingers as after a refused head, so that the answer is not lost to a reset.

use crate::error::ApiError;
use crate::request_id;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Longest request target (path and query) accepted, in bytes; longer: 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields in one request; more: 431.
pub const MAX_HEADERS: usize = 100;
/// Largest request head (request line and header fields), in bytes; larger: 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The request hyper is handed in place of a refused head.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: lectern\r\nconnection: close\r\n\r\n";
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// After answering a refused head, the rest of what the client sends is read and dropped for
/// up to this long (and this many bytes) before the connection closes: closing with unread
/// data would send a reset, which can destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// How long a connection may take to send a head, and may stay idle between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// What the IO side and the service side of one connection share.
struct Shared {
    /// Heads handed to hyper (the stand-in included), i.e. requests the service will see.
    heads: AtomicU64,
    /// Calls of the service so far.
    calls: AtomicU64,
    /// Responses the service has produced.
    finished: AtomicU64,
    /// The index of the call that is the stand-in, and what to answer it; `u64::MAX`: none.
    refused_at: AtomicU64,
    refusal: Mutex<Option<ApiError>>,
    /// Whether the body of the request being answered was read to its end (or had none).
    /// HTTP/1.1 answers one request at a time, so one flag serves the whole connection.
    body_ended: AtomicBool,
    /// Set when an answer closes the connection: the IO lingers on shutdown.
    linger: AtomicBool,
}

/// Wraps one accepted connection and the service for it.
pub fn guard<IO, S>(io: IO, service: S, timeouts: Timeouts) -> (GuardedIo<IO>, GuardedService<S>) {
    let shared = Arc::new(Shared {
        heads: AtomicU64::new(0),
        calls: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        refused_at: AtomicU64::new(u64::MAX),
        refusal: Mutex::new(None),
        body_ended: AtomicBool::new(true),
        linger: AtomicBool::new(false),
    });
    let now = Instant::now();
    let io = GuardedIo {
        io,
        shared: shared.clone(),
        buf: Vec::with_capacity(READ_CHUNK),
        start: 0,
        checked: 0,
        state: State::Head { scanned: 0 },
        eof: false,
        timeouts,
        // The first head is due a header-read timeout after the connection opens.
        deadline: Some(now + timeouts.header_read),
        deadline_is_idle: false,
        sleep: Box::pin(tokio::time::sleep_until(now + timeouts.header_read)),
        lingering: None,
    };
    (io, GuardedService { inner: service, shared })
}

/// Where the byte stream is, as far as it has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a whole head; `scanned` bytes of it were searched for its end already.
    Head { scanned: usize },
    /// Inside a body with this many bytes left.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunked),
    /// Framing no longer followed (hyper refuses this body and closes the connection).
    Passthrough,
    /// A head was refused: the stand-in is being handed over (`sent` bytes so far), then nothing.
    Refused { sent: usize },
}

/// The connection's IO with its heads checked and its time limits kept.
pub struct GuardedIo<IO> {
    io: IO,
    shared: Arc<Shared>,
    /// Bytes read and not yet handed to hyper are `buf[start..]`; of those, `buf[start..checked]`
    /// may be handed over.
    buf: Vec<u8>,
    start: usize,
    checked: usize,
    state: State,
    eof: bool,
    timeouts: Timeouts,
    deadline: Option<Instant>,
    deadline_is_idle: bool,
    sleep: Pin<Box<Sleep>>,
    /// After a refusal: the write side is shut, and this many bytes were dropped since.
    lingering: Option<usize>,
}

impl<IO> GuardedIo<IO> {
    /// Follows the stream over `buf[checked..]`, moving `checked` as far as it may go.
    fn advance(&mut self) {
        while self.checked < self.buf.len() {
            let available = &self.buf[self.checked..];
            match &mut self.state {
                State::Head { scanned } => match check_head(available, scanned) {
                    HeadCheck::Partial => return,
                    HeadCheck::Refused(status, message) => {
                        self.refuse(status, message);
                        return;
                    }
                    HeadCheck::Complete { len, body } => {
                        self.checked += len;
                        self.shared.heads.fetch_add(1, Ordering::Relaxed);
                        self.deadline = None;
                        self.state = match body {
                            Body::Empty => State::Head { scanned: 0 },
                            Body::Length(n) => State::Length(n),
                            Body::Chunked => State::Chunked(Chunked::default()),
                        };
                    }
                },
                State::Length(left) => {
                    let take = (*left).min(available.len() as u64);
                    self.checked += take as usize;
                    *left -= take;
                    if *left == 0 {
                        self.state = State::Head { scanned: 0 };
                    }
                }
                State::Chunked(chunked) => {
                    let (used, outcome) = chunked.advance(available);
                    self.checked += used;
                    match outcome {
                        ChunkOutcome::More => {}
                        ChunkOutcome::Done => self.state = State::Head { scanned: 0 },
                        ChunkOutcome::Broken => self.state = State::Passthrough,
                    }
                }
                State::Passthrough => self.checked = self.buf.len(),
                State::Refused { .. } => return,
            }
        }
    }

    /// Drops the refused head (and everything after it) and hands hyper the stand-in instead.
    fn refuse(&mut self, status: StatusCode, message: String) {
        tracing::debug!(status = status.as_u16(), %message, "request head refused");
        *self.shared.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(ApiError::new(status, message));
        self.shared.refused_at.store(self.shared.heads.fetch_add(1, Ordering::Relaxed), Ordering::Release);
        self.buf.truncate(self.checked);
        self.state = State::Refused { sent: 0 };
    }

    /// True while the service has a request of this connection to answer.
    fn busy(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire) < self.shared.heads.load(Ordering::Relaxed)
    }

    /// Called when a read would wait: closes the connection once its time is up, else makes sure
    /// the task is woken then. A head must be whole `header_read` after its first byte; no
    /// request in flight and no head begun, or a body stalled: `idle`.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let idle = match self.state {
            State::Head { .. } | State::Refused { .. } if self.busy() => {
                self.deadline = None;
                return Poll::Pending;
            }
            State::Head { .. } => self.checked == self.buf.len(),
            State::Length(_) | State::Chunked(_) | State::Refused { .. } => true,
            State::Passthrough => return Poll::Pending,
        };
        let deadline = match self.deadline {
            // An idle time gives way to a head's time once its first byte is in.
            Some(d) if !self.deadline_is_idle || idle => d,
            _ => {
                let d = Instant::now() + if idle { self.timeouts.idle } else { self.timeouts.header_read };
                self.deadline = Some(d);
                self.deadline_is_idle = idle;
                d
            }
        };
        if self.arm(deadline, cx) {
            Poll::Ready(self.timed_out())
        } else {
            Poll::Pending
        }
    }

    /// Makes sure this task is woken at `deadline` (or earlier: the timer is only moved when it
    /// would fire late, or has fired for an older deadline). True when `deadline` has passed.
    fn arm(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.sleep.deadline() == deadline {
            return true;
        }
        self.sleep.as_mut().reset(deadline);
        self.sleep.as_mut().poll(cx).is_ready()
    }

    /// An answer was written: the idle time starts over from now. hyper does not read again
    /// after answering (its last read already waited), so the timer is armed here, with this
    /// task's waker, to wake the connection when the idle time is up.
    fn wrote(&mut self, cx: &mut Context<'_>) {
        let deadline = Instant::now() + self.timeouts.idle;
        self.deadline = Some(deadline);
        self.deadline_is_idle = true;
        self.arm(deadline, cx);
    }

    fn timed_out(&self) -> io::Error {
        let what = if self.deadline_is_idle { "idle connection" } else { "request head not received in time" };
        tracing::debug!(reason = what, "closing the connection");
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for GuardedIo<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.start < this.checked {
                let n = (this.checked - this.start).min(out.remaining());
                out.put_slice(&this.buf[this.start..this.start + n]);
                this.start += n;
                if this.start == this.buf.len() {
                    this.buf.clear();
                    this.start = 0;
                    this.checked = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let State::Refused { sent } = &mut this.state {
                if *sent < STAND_IN.len() {
                    let n = (STAND_IN.len() - *sent).min(out.remaining());
                    out.put_slice(&STAND_IN[*sent..*sent + n]);
                    *sent += n;
                    return Poll::Ready(Ok(()));
                }
                // Not EOF: hyper drops the answer in flight when the client seems to have gone.
                // It closes the connection after answering the stand-in (`connection: close`).
                return match this.poll_deadline(cx) {
                    Poll::Ready(e) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                };
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Unchecked bytes left at the front (a partial head): make room behind them.
            if this.start > 0 && this.buf.capacity() - this.buf.len() < READ_CHUNK {
                this.buf.drain(..this.start);
                this.checked -= this.start;
                this.start = 0;
            }
            this.buf.reserve(READ_CHUNK);
            let len = this.buf.len();
            let spare: &mut [MaybeUninit<u8>] = &mut this.buf.spare_capacity_mut()[..READ_CHUNK];
            let mut read = ReadBuf::uninit(spare);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    // SAFETY: `n` bytes after `len` were initialised by the read.
                    unsafe { this.buf.set_len(len + n) };
                    if n == 0 {
                        this.eof = true;
                    }
                    if matches!(this.state, State::Length(_) | State::Chunked(_)) {
                        // A body that moves is not idle.
                        this.deadline = None;
                    }
                    this.advance();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match this.poll_deadline(cx) {
                        Poll::Ready(e) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.io).poll_write(cx, data));
        self.wrote(cx);
        Poll::Ready(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, data));
        self.wrote(cx);
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !matches!(this.state, State::Refused { .. }) && !this.shared.linger.load(Ordering::Acquire) {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        }
        if this.lingering.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.lingering = Some(0);
            this.sleep.as_mut().reset(Instant::now() + LINGER);
        }
        ready!(this.poll_linger(cx));
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> GuardedIo<IO> {
    /// Reads and drops what the client still sends, until it stops, [`LINGER`] passes or
    /// [`LINGER_BYTES`] were dropped; pending while none of these happened.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        loop {
            let dropped = self.lingering.unwrap_or(0);
            if dropped >= LINGER_BYTES {
                return Poll::Ready(());
            }
            let mut read = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    self.lingering = Some(dropped + read.filled().len());
                }
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return self.sleep.as_mut().poll(cx),
            }
        }
    }
}

/// The service of one connection: answers the stand-in of a refused head, and counts answers.
/// The inner service is called without `poll_ready`: it must always be ready (axum routers
/// and [`crate::App`] are).
#[derive(Clone)]
pub struct GuardedService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> hyper::service::Service<Request<B>> for GuardedService<S>
where
    B: http_body::Body,
    S: tower_service::Service<Request<Tracked<B>>, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Counted<S::Future>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let index = self.shared.calls.fetch_add(1, Ordering::Relaxed);
        self.shared.body_ended.store(request.body().is_end_stream(), Ordering::Release);
        if index == self.shared.refused_at.load(Ordering::Acquire) {
            let refusal = self.shared.refusal.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(error) = refusal {
                let mut response = error.into_response();
                response.headers_mut().insert(request_id::REQUEST_ID, request_id::next_id());
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Counted {
                    inner: CountedInner::Ready { response: Some(response) },
                    shared: self.shared.clone(),
                };
            }
        }
        let request = request.map(|inner| Tracked { inner, shared: self.shared.clone() });
        let mut inner = self.inner.clone();
        Counted { inner: CountedInner::Service { future: inner.call(request) }, shared: self.shared.clone() }
    }
}

pin_project_lite::pin_project! {
    /// A request body that records in the connection's [`Shared`] when it was read to its end.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        shared: Arc<Shared>,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.shared.body_ended.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response future that records, when it completes, that the request was answered.
    pub struct Counted<F> {
        #[pin]
        inner: CountedInner<F>,
        shared: Arc<Shared>,
    }
}

pin_project_lite::pin_project! {
    #[project = CountedProj]
    enum CountedInner<F> {
        Service { #[pin] future: F },
        Ready { response: Option<Response> },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Counted<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.project() {
            CountedProj::Service { future } => ready!(future.poll(cx))?,
            CountedProj::Ready { response } => response.take().expect("polled after completion"),
        };
        if !this.shared.body_ended.load(Ordering::Acquire) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if response.headers().get(header::CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")) {
            this.shared.linger.store(true, Ordering::Release);
        }
        this.shared.finished.fetch_add(1, Ordering::Release);
        Poll::Ready(Ok(response))
    }
}

// ---- request heads ----

/// What follows a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Empty,
    Length(u64),
    Chunked,
}

#[derive(Debug, PartialEq)]
enum HeadCheck {
    /// More bytes are needed.
    Partial,
    Complete {
        len: usize,
        body: Body,
    },
    Refused(StatusCode, String),
}

/// Checks the head at the start of `bytes`; `scanned` remembers how far its end was searched
/// (so that a head arriving a byte at a time is not parsed again on every byte).
fn check_head(bytes: &[u8], scanned: &mut usize) -> HeadCheck {
    let first_attempt = *scanned == 0;
    if !first_attempt && !has_blank_line(bytes, *scanned) {
        *scanned = bytes.len();
        return too_long(bytes).unwrap_or(HeadCheck::Partial);
    }
    *scanned = bytes.len();
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len =
        match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut request, bytes, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return too_long(bytes).unwrap_or(HeadCheck::Partial),
            Err(httparse::Error::TooManyHeaders) => {
                return HeadCheck::Refused(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("the request has more than {MAX_HEADERS} header fields"),
                )
            }
            Err(e) => return HeadCheck::Refused(StatusCode::BAD_REQUEST, format!("malformed request head: {e}")),
        };
    if len > MAX_HEAD_BYTES {
        return head_too_large();
    }
    let path = request.path.unwrap_or_default();
    if path.len() > MAX_URI_BYTES {
        return uri_too_long();
    }
    if !plain_path(path.as_bytes()) && axum::http::Uri::try_from(path).is_err() {
        return HeadCheck::Refused(StatusCode::BAD_REQUEST, "malformed request target".into());
    }
    let http11 = request.version == Some(1);
    match framing(request.headers, http11) {
        Ok(body) => HeadCheck::Complete { len, body },
        Err(message) => HeadCheck::Refused(StatusCode::BAD_REQUEST, message),
    }
}

/// A head still incomplete but already over a limit: 414 when the request line alone is too
/// long (no end of line within the URI limit), else 431 once the head is over its limit.
fn too_long(bytes: &[u8]) -> Option<HeadCheck> {
    let line_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    if line_end > MAX_URI_BYTES + 64 {
        return Some(uri_too_long());
    }
    (bytes.len() > MAX_HEAD_BYTES).then(head_too_large)
}

fn uri_too_long() -> HeadCheck {
    HeadCheck::Refused(StatusCode::URI_TOO_LONG, format!("the request URI is longer than {MAX_URI_BYTES} bytes"))
}

fn head_too_large() -> HeadCheck {
    HeadCheck::Refused(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        format!("the request's header fields are larger than {MAX_HEAD_BYTES} bytes"),
    )
}

/// True when `bytes` holds an empty line (the end of a head) ending after `from - 3`.
fn has_blank_line(bytes: &[u8], from: usize) -> bool {
    let begin = from.saturating_sub(3);
    bytes[begin..]
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(begin + i + 2) == Some(&b'\n')))
}

/// An origin-form target of characters every URI parser takes (the common case, checked
/// without building a `Uri`).
fn plain_path(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && path.iter().all(|&b| b.is_ascii_alphanumeric() || b"/-._~%?=&+,:;@!$'()*".contains(&b))
}

/// The body framing of a request, by the rules hyper applies (RFC 9112 section 6), refusing
/// what hyper would refuse, and both `Transfer-Encoding` and `Content-Length` at once.
fn framing(headers: &[httparse::Header<'_>], http11: bool) -> Result<Body, String> {
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).map_err(|_| "Content-Length is not a number".to_string())?;
            for part in text.split(',') {
                let n = digits(part.trim().as_bytes())
                    .ok_or_else(|| format!("Content-Length '{}' is not a number", text.trim()))?;
                match length {
                    Some(previous) if previous != n => {
                        return Err("the request has two different Content-Length values".into())
                    }
                    _ => length = Some(n),
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err("Transfer-Encoding needs HTTP/1.1".into());
            }
            let last = std::str::from_utf8(h.value).ok().and_then(|v| v.rsplit(',').next()).map(str::trim);
            chunked = Some(last.is_some_and(|e| e.eq_ignore_ascii_case("chunked")));
        }
    }
    match (chunked, length) {
        (Some(_), Some(_)) => Err("the request has both Transfer-Encoding and Content-Length".into()),
        (Some(false), None) => Err("Transfer-Encoding must end in 'chunked'".into()),
        (Some(true), None) => Ok(Body::Chunked),
        (None, Some(0)) | (None, None) => Ok(Body::Empty),
        (None, Some(n)) => Ok(Body::Length(n)),
    }
}

/// Decimal digits only (no sign, no space), without overflow.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0')))
}

// ---- chunked bodies ----

/// Where a chunked body is, byte by byte, as hyper's decoder walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Chunked {
    step: ChunkStep,
    size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkStep {
    #[default]
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

#[derive(Debug, PartialEq, Eq)]
enum ChunkOutcome {
    More,
    Done,
    /// Not a chunked body hyper takes: it fails that request and closes the connection.
    Broken,
}

impl Chunked {
    /// Walks `bytes`; returns how many belong to this body and whether it ended.
    fn advance(&mut self, bytes: &[u8]) -> (usize, ChunkOutcome) {
        let mut i = 0;
        while i < bytes.len() {
            if self.step == ChunkStep::Data {
                let take = self.size.min((bytes.len() - i) as u64);
                self.size -= take;
                i += take as usize;
                if self.size == 0 {
                    self.step = ChunkStep::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            use ChunkStep::*;
            self.step = match (self.step, b) {
                (Start | Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = (b as char).to_digit(16).expect("hex digit") as u64;
                    match self.size.checked_mul(16).and_then(|s| s.checked_add(digit)) {
                        Some(size) => self.size = size,
                        None => return (i, ChunkOutcome::Broken),
                    }
                    Size
                }
                (Size | SizeLws, b'\t' | b' ') => SizeLws,
                (Size | SizeLws, b';') => Extension,
                (Size | SizeLws | Extension, b'\r') => SizeLf,
                (Extension, b'\n') => return (i, ChunkOutcome::Broken),
                (Extension, _) => Extension,
                (SizeLf, b'\n') if self.size == 0 => EndCr,
                (SizeLf, b'\n') => Data,
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Start,
                (EndCr, b'\r') => EndLf,
                (Trailer, b'\r') => TrailerLf,
                (EndCr | Trailer, _) => Trailer,
                (TrailerLf, b'\n') => EndCr,
                (EndLf, b'\n') => {
                    *self = Chunked::default();
                    return (i, ChunkOutcome::Done);
                }
                _ => return (i, ChunkOutcome::Broken),
            };
        }
        (i, ChunkOutcome::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: &str) -> HeadCheck {
        check_head(head.as_bytes(), &mut 0)
    }

    fn status(head: &str) -> Option<StatusCode> {
        match check(head) {
            HeadCheck::Refused(status, _) => Some(status),
            _ => None,
        }
    }

    #[test]
    fn ordinary_heads_pass_with_their_framing() {
        let head = "POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 12\r\n\r\n{}";
        assert_eq!(check(head), HeadCheck::Complete { len: head.len() - 2, body: Body::Length(12) });
        let head = "GET / HTTP/1.1\r\n\r\n";
        assert_eq!(check(head), HeadCheck::Complete { len: head.len(), body: Body::Empty });
        let head = "POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
        assert_eq!(check(head), HeadCheck::Complete { len: head.len(), body: Body::Chunked });
        let head = "POST / HTTP/1.1\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(check(head), HeadCheck::Complete { len: head.len(), body: Body::Length(5) });
        assert_eq!(check("GET / HTTP/1.1\r\nhost: x\r\n"), HeadCheck::Partial);
    }

    #[test]
    fn heads_hyper_would_answer_bare_are_refused_with_a_status() {
        assert_eq!(status("POST / HTTP/1.1\r\ncontent-length: abc\r\n\r\n"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("POST / HTTP/1.1\r\ncontent-length: +5\r\n\r\n"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            status("POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(status("POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("GET /a<b HTTP/1.1\r\n\r\n"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("G(T / HTTP/1.1\r\n\r\n"), Some(StatusCode::BAD_REQUEST));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert_eq!(status(&long), Some(StatusCode::URI_TOO_LONG));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }

    #[test]
    fn incomplete_heads_over_a_limit_are_refused_before_they_end() {
        let line = format!("GET /{}", "a".repeat(MAX_URI_BYTES + 100));
        assert_eq!(status(&line), Some(StatusCode::URI_TOO_LONG));
        let big = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(status(&big), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }

    #[test]
    fn a_head_arriving_in_pieces_is_found_once_whole() {
        let head = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        let mut scanned = 0;
        for end in 1..head.len() {
            assert_eq!(check_head(&head[..end], &mut scanned), HeadCheck::Partial, "{end}");
        }
        assert_eq!(check_head(head, &mut scanned), HeadCheck::Complete { len: head.len(), body: Body::Empty });
    }

    #[test]
    fn chunked_bodies_end_where_hyper_ends_them() {
        let body = b"5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\nGET";
        let mut c = Chunked::default();
        assert_eq!(c.advance(body), (body.len() - 3, ChunkOutcome::Done));
        // Byte by byte, the same.
        let mut c = Chunked::default();
        let mut total = 0;
        for (i, b) in body.iter().enumerate() {
            let (used, outcome) = c.advance(std::slice::from_ref(b));
            total += used;
            if outcome == ChunkOutcome::Done {
                assert_eq!(i + 1, body.len() - 3);
                break;
            }
        }
        assert_eq!(total, body.len() - 3);
        let mut c = Chunked::default();
        assert_eq!(c.advance(b"a\r\n0123456789\r\n0\r\n\r\n"), (20, ChunkOutcome::Done));
        assert_eq!(Chunked::default().advance(b"zz\r\n").1, ChunkOutcome::Broken);
        assert_eq!(Chunked::default().advance(b"ffffffffffffffffff\r\n").1, ChunkOutcome::Broken);
    }
}
