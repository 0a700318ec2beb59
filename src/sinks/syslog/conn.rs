//! A syslog connection, and the checks that make a batch count as delivered.
//!
//! Syslog has no application acknowledgement, and a write to a TCP connection the
//! receiver has already closed still succeeds locally: the kernel takes the bytes,
//! the receiver answers with a reset, and the batch is gone. So a stream is
//! trusted for a batch only if (1) before writing, the receiver has not closed or
//! reset it, and (2) after writing, the receiver's TCP stack has acknowledged every
//! byte while the connection stayed established (Linux: `TCP_INFO` and `SIOCOUTQ`).
//! Anything else is doubt, and the caller sends the whole batch again on a new
//! connection (at-least-once). What remains is the receiver process dying after its
//! kernel acknowledged the bytes but before it stored them: no TCP sender can see that.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};

pub enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

impl Conn {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Conn::Tcp(s) => Some(s),
            Conn::Tls(s) => Some(s.get_ref().0),
            Conn::Udp(_) => None,
        }
    }

    /// Whether the receiver has closed or reset the connection, as far as can be seen
    /// without waiting. `None` means it is still open; otherwise what was seen.
    pub fn closed_by_peer(&mut self) -> Option<String> {
        let tcp = self.tcp()?;
        if let Ok(Some(e)) = tcp.take_error() {
            return Some(e.to_string());
        }
        if let Some(state) = kernel::state(tcp)
            && state != kernel::ESTABLISHED
        {
            return Some(kernel::describe(state));
        }
        // Receivers send nothing, so anything readable is the end of the stream (TLS close_notify, FIN).
        match self {
            Conn::Tcp(s) => peer_eof(s),
            Conn::Tls(s) => peer_eof(s.as_mut()),
            Conn::Udp(_) => None,
        }
    }

    /// Writes `frames` and waits until the receiver has acknowledged them (see the module).
    pub async fn send_stream(&mut self, frames: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.write_all(frames).await?;
                s.flush().await?;
            }
            Conn::Tls(s) => {
                s.write_all(frames).await?;
                s.flush().await?;
            }
            Conn::Udp(_) => unreachable!("datagrams are sent one by one"),
        }
        match self.tcp() {
            Some(tcp) => acknowledged(tcp).await,
            None => Ok(()),
        }
    }
}

/// One read attempt that never waits: end of stream or an error means the receiver is gone.
fn peer_eof<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut buf = [0u8; 1024];
    // Bounded: a receiver that talks back (it should not) is drained a little, not forever.
    for _ in 0..16 {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut *s).poll_read(&mut cx, &mut rb) {
            Poll::Pending => return None,
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return Some("the receiver closed the connection".into()),
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(e)) => return Some(e.to_string()),
        }
    }
    None
}

/// Waits until every byte written is acknowledged by the receiver's TCP stack while the
/// connection stays established. Polls the kernel's counters: TCP signals no event for
/// it. Elsewhere than Linux this cannot be seen, and only the checks before writing hold.
async fn acknowledged(tcp: &TcpStream) -> io::Result<()> {
    let mut pause = Duration::from_millis(1);
    loop {
        let Some(unacked) = kernel::unacked_bytes(tcp) else { return Ok(()) };
        // State after the counter: a reset that lands between the two is still seen.
        match kernel::state(tcp) {
            Some(s) if s != kernel::ESTABLISHED => {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, kernel::describe(s)));
            }
            _ => {}
        }
        if let Ok(Some(e)) = tcp.take_error() {
            return Err(e);
        }
        if unacked == 0 {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

#[cfg(target_os = "linux")]
mod kernel {
    use std::os::fd::AsRawFd;

    use tokio::net::TcpStream;

    /// `TCP_ESTABLISHED` in the kernel's `tcp_states.h`.
    pub const ESTABLISHED: u8 = 1;

    /// The connection's TCP state, or `None` if the kernel will not say.
    pub fn state(tcp: &TcpStream) -> Option<u8> {
        // SAFETY: `tcp_info` is plain data; the kernel writes at most `len` bytes into it and
        // the descriptor is borrowed from a live socket.
        unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let r =
                libc::getsockopt(tcp.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len);
            (r == 0).then_some(info.tcpi_state)
        }
    }

    /// Bytes written but not yet acknowledged by the receiver (`SIOCOUTQ`).
    pub fn unacked_bytes(tcp: &TcpStream) -> Option<u64> {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through the pointer; the descriptor is a live socket.
        let r = unsafe { libc::ioctl(tcp.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        (r == 0).then_some(n.max(0) as u64)
    }

    pub fn describe(state: u8) -> String {
        let what = match state {
            7 => "the receiver reset the connection",
            8 => "the receiver closed the connection",
            4 | 5 | 6 | 9 | 11 => "the connection is closing",
            _ => "the connection is not established",
        };
        format!("{what} (TCP state {state})")
    }
}

#[cfg(not(target_os = "linux"))]
mod kernel {
    use tokio::net::TcpStream;

    pub const ESTABLISHED: u8 = 1;

    pub fn state(_: &TcpStream) -> Option<u8> {
        None
    }

    pub fn unacked_bytes(_: &TcpStream) -> Option<u64> {
        None
    }

    pub fn describe(state: u8) -> String {
        format!("TCP state {state}")
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (Conn, tokio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Conn::Tcp(client), server)
    }

    #[tokio::test]
    async fn a_batch_counts_once_the_receiver_has_acknowledged_it() {
        let (mut conn, mut server) = pair().await;
        assert_eq!(conn.closed_by_peer(), None);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        conn.send_stream(&vec![b'x'; 1 << 20]).await.unwrap();
        drop(conn);
        assert_eq!(reader.await.unwrap(), 1 << 20);
    }

    /// The write itself succeeds (the kernel takes the bytes); the receiver's reset is what tells.
    #[tokio::test]
    async fn a_batch_written_into_a_connection_the_receiver_closed_is_not_delivered() {
        let (mut conn, server) = pair().await;
        drop(server);
        // Seen before writing...
        let mut seen = None;
        for _ in 0..1_000 {
            seen = conn.closed_by_peer();
            if seen.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(seen.is_some(), "the receiver's close is visible before writing");
        // ...and, skipping that check, after writing.
        let err = conn.send_stream(b"12 <13>1 - - - -").await.unwrap_err();
        assert!(err.to_string().contains("reset") || err.kind() == io::ErrorKind::ConnectionReset, "{err}");
    }
}
