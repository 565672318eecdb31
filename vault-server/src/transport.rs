//! The connection loop of the server, plain or TLS (docs/spec/api.md §1): HTTP/1.1 with two
//! limits that `axum::serve` does not set, so that slow or stalled clients cannot hold
//! connections, and the memory of their answers, for ever:
//!
//! - **header time-out** ([`Limits::header_timeout`]): a request's head (request line and
//!   headers) must arrive within it, counted from when the connection waits for it; a
//!   client that trickles its headers (slowloris), or keeps an idle connection open, is
//!   disconnected. The body has its own limit, the request time-out (`408`).
//! - **send stall time-out** ([`Limits::send_stall_timeout`]): a write to the client that
//!   makes no progress for this long ends the connection: a client that stops reading
//!   cannot keep a 16 MiB page answer in the server's memory.
//!
//! Each connection is served on its own task; the client's address reaches the handlers as
//! `ConnectInfo<SocketAddr>`. On shutdown the loop stops accepting, idle connections close
//! at once and the requests in flight finish (bound the wait from outside).
//!
//! [`Limits::header_timeout`]: crate::config::Limits::header_timeout
//! [`Limits::send_stall_timeout`]: crate::config::Limits::send_stall_timeout

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tower::ServiceExt as _;

use crate::api::{self, AppState};
use crate::store::Backend;

/// The time limits of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// See [`crate::config::Limits::header_timeout`].
    pub header: Duration,
    /// See [`crate::config::Limits::send_stall_timeout`].
    pub send_stall: Duration,
}

/// Serves `app`, the router over `state`, on `listener` until `shutdown` completes (plain
/// HTTP: `api::serve`; TLS: `tls::serve_tls`), sweeping expired sessions meanwhile. Then
/// waits for the requests in flight and lets go of the backend.
pub(crate) async fn serve_api<B: Backend, L>(
    listener: L,
    app: Router,
    state: Arc<AppState<B>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let sweeper = tokio::spawn(api::sweep_periodically(Arc::clone(&state)));
    let limits = ConnectionLimits {
        header: state.config().limits.header_timeout,
        send_stall: state.config().limits.send_stall_timeout,
    };
    let result = serve_connections(listener, app, limits, shutdown).await;
    sweeper.abort();
    let _ = sweeper.await;
    // The last reference to the backend goes in the blocking pool: a backend may block
    // when it closes (the PostgreSQL client does), which an async worker must not do.
    let _ = tokio::task::spawn_blocking(move || drop(state)).await;
    result
}

/// Serves `app` on every connection `listener` accepts until `shutdown` completes, then
/// waits for the connections to finish their requests in flight.
pub(crate) async fn serve_connections<L>(
    mut listener: L,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(address));
            app.clone().oneshot(request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header)
            .keep_alive(true);
        let io = TokioIo::new(Stalling::new(io, limits.send_stall));
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "vault_server", %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A connection whose writes fail with `TimedOut` once one has waited `limit` without
/// progress (the client stopped reading). Reads pass through: their limits are the header
/// and request time-outs.
struct Stalling<IO> {
    io: IO,
    limit: Duration,
    /// Runs while a write (or flush, or shutdown) waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> Stalling<IO> {
    fn new(io: IO, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
        }
    }

    /// What a write that answered `poll` becomes: progress resets the clock, waiting
    /// starts it, and waiting past the limit is an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Stalling<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Stalling<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// A write to a peer that never reads fails after the limit; one that is read goes on.
    #[tokio::test]
    async fn a_write_that_makes_no_progress_fails_after_the_limit() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stalling = Stalling::new(near, Duration::from_millis(200));
        // 1 KiB fits the pipe; the next write waits for a reader that never comes.
        stalling.write_all(&[0u8; 1024]).await.unwrap();
        let started = tokio::time::Instant::now();
        let e = stalling.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));

        // A reader that keeps reading, slower than the limit per chunk in total but never
        // stalling for the limit: every write goes through.
        let (near, mut far2) = tokio::io::duplex(1024);
        let mut stalling = Stalling::new(near, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            let mut buf = [0u8; 512];
            while got < 8 * 1024 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                got += tokio::io::AsyncReadExt::read(&mut far2, &mut buf)
                    .await
                    .unwrap();
            }
            got
        });
        stalling.write_all(&[1u8; 8 * 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 8 * 1024);
        drop(far.shutdown().await);
    }
}
