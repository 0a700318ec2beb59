//! Connection resets on demand. hyper finishes or cleanly closes every
//! response it is given, so the injected "reset" fault is done below it: a
//! listener wraps each socket, and a handler can arm its connection to send
//! the response head plus `n` body bytes and then abort with a TCP RST.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A connection's reset switch, handed to handlers as connect info.
/// Holds `body_bytes + 1` when armed, 0 when not.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResetSwitch(Arc<AtomicU64>);

impl ResetSwitch {
    /// The next response on this connection stops after `body_bytes` bytes of its body.
    pub(crate) fn arm(&self, body_bytes: u64) {
        self.0.store(body_bytes.saturating_add(1), Ordering::Release);
    }
}

pub(crate) struct ResetListener(pub(crate) TcpListener);

impl Listener for ResetListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        let _ = stream.set_nodelay(true);
        (ResettableStream { stream, switch: ResetSwitch::default(), cut: None }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, ResetListener>> for ResetSwitch {
    fn connect_info(stream: IncomingStream<'_, ResetListener>) -> Self {
        stream.io().switch.clone()
    }
}

/// Progress of an armed cut through the bytes written: first the head up to
/// its blank line, then at most `body_left` bytes of body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    head_matched: u8,
    in_body: bool,
    body_left: u64,
}

impl Cut {
    /// Advances over `bytes`, returning how many of them may be sent.
    fn advance(&mut self, bytes: &[u8]) -> usize {
        for (i, &b) in bytes.iter().enumerate() {
            if self.in_body {
                if self.body_left == 0 {
                    return i;
                }
                self.body_left -= 1;
                continue;
            }
            let want = b"\r\n\r\n"[usize::from(self.head_matched)];
            self.head_matched = if b == want {
                self.head_matched + 1
            } else if b == b'\r' {
                1
            } else {
                0
            };
            self.in_body = self.head_matched == 4;
        }
        bytes.len()
    }
}

pub(crate) struct ResettableStream {
    stream: TcpStream,
    switch: ResetSwitch,
    cut: Option<Cut>,
}

impl ResettableStream {
    fn poll_cut_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.cut.is_none() {
            let armed = self.switch.0.swap(0, Ordering::AcqRel);
            if armed != 0 {
                self.cut = Some(Cut { head_matched: 0, in_body: false, body_left: armed - 1 });
            }
        }
        let Some(cut) = self.cut.as_mut() else {
            return Pin::new(&mut self.stream).poll_write(cx, buf);
        };
        let allowed = cut.clone().advance(buf);
        if allowed == 0 && !buf.is_empty() {
            // Zero linger turns the close into an RST, as a dropped proxy connection looks.
            let _ = self.stream.set_zero_linger();
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "mock: injected connection reset")));
        }
        let res = Pin::new(&mut self.stream).poll_write(cx, &buf[..allowed]);
        if let Poll::Ready(Ok(n)) = res {
            cut.advance(&buf[..n]);
        }
        res
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_cut_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.cut.is_none() && this.switch.0.load(Ordering::Acquire) == 0 {
            return Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        }
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        this.poll_cut_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_passes_the_head_then_n_body_bytes() {
        let mut c = Cut { head_matched: 0, in_body: false, body_left: 3 };
        let msg = b"HTTP/1.1 200 OK\r\nx: \r\n\r\n\r\n{\"abcdef";
        let head = msg.len() - 10; // the body is `\r\n{"abcdef`
        // Split writes must add up to the same cut.
        assert_eq!(c.advance(&msg[..10]), 10);
        assert_eq!(c.advance(&msg[10..head + 1]), head + 1 - 10);
        assert_eq!(c.advance(&msg[head + 1..]), 2);
        assert_eq!(c.advance(b"more"), 0);
    }
}
