//! A vhost-user message relay between the frontend (QEMU) and the rust-vmm backend handler.
//!
//! It forwards every message unchanged, with its file descriptors, in both directions, except
//! one fix: QEMU ≤ 7.2 (Debian 12) sends `SET_VRING_ENABLE` while the virtio-net device is
//! realized, before any `SET_FEATURES`, and the `vhost` crate (0.18) refuses that and drops the
//! connection (`InactiveFeature(PROTOCOL_FEATURES)`). The relay holds such early messages
//! (acking them if the frontend asked for a reply) and replays the last state of each ring
//! right after the first `SET_FEATURES`, which is what the vhost-user spec allows: rings start
//! disabled when PROTOCOL_FEATURES is negotiated and are enabled by that message.
//!
//! Only the control path goes through here; packets never do.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// vhost-user message header: request, flags, payload size (3 × u32, little endian).
pub const HDR_SIZE: usize = 12;
/// Largest payload relayed; larger sizes are a protocol error (the connection is closed).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most file descriptors one message may carry.
pub const MAX_FDS: usize = 32;
/// `VHOST_USER_SET_FEATURES`.
pub const REQ_SET_FEATURES: u32 = 2;
/// `VHOST_USER_SET_VRING_ENABLE`.
pub const REQ_SET_VRING_ENABLE: u32 = 18;
/// Header flag: protocol version 1.
pub const FLAG_VERSION_1: u32 = 0x1;
/// Header flag: this is a reply.
pub const FLAG_REPLY: u32 = 0x4;
/// Header flag: the sender wants an ack (REPLY_ACK).
pub const FLAG_NEED_REPLY: u32 = 0x8;

/// Most rings whose early enable state is remembered.
const MAX_EARLY_RINGS: usize = 64;

/// A parsed message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgHeader {
    /// Request code.
    pub request: u32,
    /// Flags.
    pub flags: u32,
    /// Payload size.
    pub size: u32,
}

impl MsgHeader {
    /// Parses 12 bytes.
    pub fn parse(b: &[u8; HDR_SIZE]) -> MsgHeader {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        MsgHeader { request: w(0), flags: w(4), size: w(8) }
    }

    /// The 12 wire bytes.
    pub fn bytes(&self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..4].copy_from_slice(&self.request.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// One relayed message.
#[derive(Debug)]
pub struct Msg {
    /// Header.
    pub hdr: MsgHeader,
    /// Payload (`hdr.size` bytes).
    pub payload: Vec<u8>,
    /// Attached descriptors.
    pub fds: Vec<OwnedFd>,
}

/// What the filter decided for a frontend message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward it to the backend.
    Forward,
    /// Hold it back; if `Some`, send this reply to the frontend.
    Swallow(Option<Vec<u8>>),
}

/// The frontend → backend filter state (one per connection).
#[derive(Debug, Default)]
pub struct EnableFilter {
    features_seen: bool,
    early: Vec<(u32, u32)>,
    /// Early `SET_VRING_ENABLE` messages held back so far.
    pub held: u64,
}

impl EnableFilter {
    /// Decides what to do with a frontend message.
    pub fn on_frontend(&mut self, m: &Msg) -> Action {
        match m.hdr.request {
            REQ_SET_FEATURES => {
                self.features_seen = true;
                Action::Forward
            }
            REQ_SET_VRING_ENABLE if !self.features_seen => {
                if m.payload.len() >= 8 {
                    let index = u32::from_le_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]);
                    let num = u32::from_le_bytes([m.payload[4], m.payload[5], m.payload[6], m.payload[7]]);
                    if let Some(e) = self.early.iter_mut().find(|(i, _)| *i == index) {
                        e.1 = num;
                    } else if self.early.len() < MAX_EARLY_RINGS {
                        self.early.push((index, num));
                    }
                }
                self.held += 1;
                let reply = (m.hdr.flags & FLAG_NEED_REPLY != 0).then(|| {
                    let h = MsgHeader {
                        request: REQ_SET_VRING_ENABLE,
                        flags: FLAG_VERSION_1 | FLAG_REPLY,
                        size: 8,
                    };
                    let mut v = h.bytes().to_vec();
                    v.extend_from_slice(&0u64.to_le_bytes());
                    v
                });
                Action::Swallow(reply)
            }
            _ => Action::Forward,
        }
    }

    /// Messages to send to the backend right after a forwarded `SET_FEATURES` (the held ring
    /// states, without NEED_REPLY so the backend sends no reply the frontend would not expect).
    pub fn replay(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.early)
            .into_iter()
            .map(|(index, num)| {
                let h = MsgHeader { request: REQ_SET_VRING_ENABLE, flags: FLAG_VERSION_1, size: 8 };
                let mut v = h.bytes().to_vec();
                v.extend_from_slice(&index.to_le_bytes());
                v.extend_from_slice(&num.to_le_bytes());
                v
            })
            .collect()
    }
}

/// Receives up to `buf.len()` bytes, collecting attached descriptors into `fds`.
fn recv_some(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    // Room for MAX_FDS descriptors in one control message (u64-aligned storage).
    let mut cbuf = [0u64; (MAX_FDS * 4 + 64) / 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; zeroed is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: `msg` points at `iov` (our live, exclusively borrowed `buf`) and `cbuf`, both
        // valid for the lengths given, for the whole call.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    // SAFETY: the CMSG_* macros walk the control buffer the kernel just filled, within
    // msg_controllen; each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors,
    // which we now own (read unaligned: the data need not be aligned for i32).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const i32;
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too many file descriptors"));
    }
    Ok(n)
}

fn recv_exact(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = recv_some(sock, &mut buf[got..], fds)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
        }
        got += n;
    }
    Ok(())
}

/// Reads one whole message (header, payload, descriptors).
pub fn read_msg(sock: &UnixStream) -> io::Result<Msg> {
    let fd = sock.as_raw_fd();
    let mut fds = Vec::new();
    let mut h = [0u8; HDR_SIZE];
    recv_exact(fd, &mut h, &mut fds)?;
    let hdr = MsgHeader::parse(&h);
    if hdr.size as usize > MAX_PAYLOAD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "vhost-user payload too large"));
    }
    let mut payload = vec![0u8; hdr.size as usize];
    recv_exact(fd, &mut payload, &mut fds)?;
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too many file descriptors"));
    }
    Ok(Msg { hdr, payload, fds })
}

/// Sends `bytes` with `fds` attached to the first segment.
pub fn send_bytes(sock: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let mut sent = 0;
    let mut first = true;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        let mut iov = libc::iovec { iov_base: rest.as_ptr() as *mut _, iov_len: rest.len() };
        let mut cbuf = [0u64; (MAX_FDS * 4 + 64) / 8];
        // SAFETY: msghdr is plain data; zeroed is a valid empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if first && !fds.is_empty() {
            let n = fds.len().min(MAX_FDS);
            // SAFETY: CMSG_SPACE/LEN are pure size computations; `cbuf` holds CMSG_SPACE(4·n)
            // bytes (n ≤ MAX_FDS), so the header and the n descriptors written through
            // CMSG_FIRSTHDR/CMSG_DATA stay inside it.
            unsafe {
                let space = libc::CMSG_SPACE((n * 4) as u32) as usize;
                msg.msg_control = cbuf.as_mut_ptr().cast();
                msg.msg_controllen = space;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN((n * 4) as u32) as usize;
                let data = libc::CMSG_DATA(c) as *mut i32;
                for (i, f) in fds.iter().take(n).enumerate() {
                    std::ptr::write_unaligned(data.add(i), f.as_raw_fd());
                }
            }
        }
        // SAFETY: `msg` points at live buffers (`rest`, `cbuf`) for the whole call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        first = false;
        sent += n as usize;
    }
    Ok(())
}

fn send_msg(sock: &UnixStream, m: &Msg) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(HDR_SIZE + m.payload.len());
    bytes.extend_from_slice(&m.hdr.bytes());
    bytes.extend_from_slice(&m.payload);
    send_bytes(sock, &bytes, &m.fds)
}

/// Why the relay stopped.
#[derive(Debug)]
pub enum RelayEnd {
    /// The frontend closed or failed.
    Frontend(io::Error),
    /// The backend handler closed (it refused a message, or was shut down).
    Backend(io::Error),
    /// Asked to stop.
    Stopped,
}

/// Relays messages until one side closes or `stop` is set (`wake_fd`, when given, becomes
/// readable when it is, so stopping is immediate; otherwise it is checked every second);
/// `held` counts the early enables held back.
pub fn relay(
    front: &UnixStream,
    back: &UnixStream,
    stop: &AtomicBool,
    wake_fd: Option<std::os::fd::RawFd>,
    filter: &mut EnableFilter,
    held: &AtomicU64,
) -> RelayEnd {
    let mut fds = [
        libc::pollfd { fd: front.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: back.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake_fd.unwrap_or(-1), events: libc::POLLIN, revents: 0 },
    ];
    loop {
        if stop.load(Ordering::Relaxed) {
            return RelayEnd::Stopped;
        }
        for f in fds.iter_mut() {
            f.revents = 0;
        }
        // SAFETY: `fds` is a live, exclusively borrowed array of 3 pollfd (a negative fd is
        // ignored by poll).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, Duration::from_secs(1).as_millis() as i32) };
        if r <= 0 {
            continue;
        }
        if fds[0].revents != 0 {
            let m = match read_msg(front) {
                Ok(m) => m,
                Err(e) => return RelayEnd::Frontend(e),
            };
            match filter.on_frontend(&m) {
                Action::Forward => {
                    if let Err(e) = send_msg(back, &m) {
                        return RelayEnd::Backend(e);
                    }
                    if m.hdr.request == REQ_SET_FEATURES {
                        for replay in filter.replay() {
                            if let Err(e) = send_bytes(back, &replay, &[]) {
                                return RelayEnd::Backend(e);
                            }
                        }
                    }
                }
                Action::Swallow(Some(reply)) => {
                    held.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = send_bytes(front, &reply, &[]) {
                        return RelayEnd::Frontend(e);
                    }
                }
                Action::Swallow(None) => {
                    held.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if fds[1].revents != 0 {
            let m = match read_msg(back) {
                Ok(m) => m,
                Err(e) => return RelayEnd::Backend(e),
            };
            if let Err(e) = send_msg(front, &m) {
                return RelayEnd::Frontend(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn msg(request: u32, flags: u32, payload: &[u8]) -> Msg {
        Msg {
            hdr: MsgHeader { request, flags, size: payload.len() as u32 },
            payload: payload.to_vec(),
            fds: vec![],
        }
    }

    fn enable(index: u32, num: u32, flags: u32) -> Msg {
        let mut p = index.to_le_bytes().to_vec();
        p.extend_from_slice(&num.to_le_bytes());
        msg(REQ_SET_VRING_ENABLE, flags, &p)
    }

    #[test]
    fn early_enable_is_held_then_replayed_after_set_features() {
        let mut f = EnableFilter::default();
        assert_eq!(f.on_frontend(&enable(0, 1, 1)), Action::Swallow(None));
        assert_eq!(f.on_frontend(&enable(1, 0, 1)), Action::Swallow(None));
        assert_eq!(f.on_frontend(&enable(1, 1, 1)), Action::Swallow(None));
        let Action::Swallow(Some(ack)) = f.on_frontend(&enable(0, 1, FLAG_VERSION_1 | FLAG_NEED_REPLY))
        else {
            panic!("need_reply must be acked")
        };
        assert_eq!(MsgHeader::parse(ack[..12].try_into().unwrap()).flags, FLAG_VERSION_1 | FLAG_REPLY);
        assert_eq!(&ack[12..], &[0u8; 8]);
        assert_eq!(f.held, 4);
        assert_eq!(f.on_frontend(&msg(REQ_SET_FEATURES, 1, &[0; 8])), Action::Forward);
        let r = f.replay();
        assert_eq!(r.len(), 2);
        assert_eq!(&r[1][12..], &[1, 0, 0, 0, 1, 0, 0, 0]);
        // later enables go through untouched
        assert_eq!(f.on_frontend(&enable(0, 0, 1)), Action::Forward);
        assert!(f.replay().is_empty());
    }

    #[test]
    fn messages_and_fds_cross_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let (e1, _e2) = UnixStream::pair().unwrap();
        let fd: OwnedFd = e1.into();
        let m =
            Msg { hdr: MsgHeader { request: 5, flags: 1, size: 3 }, payload: vec![1, 2, 3], fds: vec![fd] };
        send_msg(&a, &m).unwrap();
        let got = read_msg(&b).unwrap();
        assert_eq!(got.hdr, m.hdr);
        assert_eq!(got.payload, vec![1, 2, 3]);
        assert_eq!(got.fds.len(), 1);
    }

    #[test]
    fn oversized_and_truncated_messages_are_errors() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&MsgHeader { request: 1, flags: 1, size: (MAX_PAYLOAD + 1) as u32 }.bytes()).unwrap();
        assert!(read_msg(&b).is_err());
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&MsgHeader { request: 1, flags: 1, size: 100 }.bytes()).unwrap();
        a.write_all(&[0u8; 10]).unwrap();
        drop(a);
        assert!(read_msg(&b).is_err());
    }

    proptest! {
        #[test]
        fn random_frontend_messages_never_panic(req in 0u32..40, flags in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..24)) {
            let mut f = EnableFilter::default();
            let _ = f.on_frontend(&msg(req, flags, &payload));
            let _ = f.replay();
        }

        #[test]
        fn random_bytes_on_the_socket_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (mut a, b) = UnixStream::pair().unwrap();
            a.write_all(&bytes).unwrap();
            drop(a);
            while read_msg(&b).is_ok() {}
        }
    }
}
