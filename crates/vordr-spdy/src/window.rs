//! SPDY/3.1 flow control: every stream, and the session as a whole, has a
//! send window (how many data bytes the peer still accepts) and a receive
//! window (how many it may still send). Both start at 64 KiB; WINDOW_UPDATE
//! frames grow them, SETTINGS_INITIAL_WINDOW_SIZE moves every stream's.

/// The initial window of a stream and of the session.
pub const DEFAULT_WINDOW: u32 = 65_536;
/// The largest window (2^31 - 1).
pub const MAX_WINDOW: u32 = 0x7fff_ffff;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowError {
    #[error("the peer sent {sent} bytes into a window of {window}")]
    Overrun { sent: u32, window: i64 },
    #[error("a window update of {delta} would take the window past 2^31 - 1")]
    Overflow { delta: u32 },
    #[error("a window update of 0 is a protocol error")]
    ZeroDelta,
}

/// What we may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// May go negative after the peer lowers the initial window.
    size: i64,
}

impl SendWindow {
    pub fn new(initial: u32) -> SendWindow {
        SendWindow {
            size: initial as i64,
        }
    }

    /// Bytes that may be sent now.
    pub fn available(&self) -> u32 {
        self.size.clamp(0, MAX_WINDOW as i64) as u32
    }

    /// Records `n` bytes sent (at most [`SendWindow::available`]).
    pub fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.available());
        self.size -= n as i64;
    }

    /// Applies the peer's WINDOW_UPDATE.
    pub fn grant(&mut self, delta: u32) -> Result<(), FlowError> {
        if delta == 0 {
            return Err(FlowError::ZeroDelta);
        }
        let next = self.size + delta as i64;
        if next > MAX_WINDOW as i64 {
            return Err(FlowError::Overflow { delta });
        }
        self.size = next;
        Ok(())
    }

    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE changed from `old` to `new`:
    /// every stream window moves by the difference.
    pub fn rebase(&mut self, old: u32, new: u32) {
        self.size += new as i64 - old as i64;
    }
}

/// What the peer may still send us, and when to tell it it may send more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    initial: u32,
    size: i64,
    /// Bytes consumed (handed to the application) not yet returned.
    unacked: u32,
}

impl RecvWindow {
    pub fn new(initial: u32) -> RecvWindow {
        RecvWindow {
            initial,
            size: initial as i64,
            unacked: 0,
        }
    }

    /// Data arrived: refused if it exceeds the window (FLOW_CONTROL_ERROR).
    pub fn receive(&mut self, n: u32) -> Result<(), FlowError> {
        if n as i64 > self.size {
            return Err(FlowError::Overrun {
                sent: n,
                window: self.size,
            });
        }
        self.size -= n as i64;
        Ok(())
    }

    /// The application took `n` bytes: returns the WINDOW_UPDATE delta to
    /// send once half the initial window has been consumed.
    pub fn release(&mut self, n: u32) -> Option<u32> {
        self.unacked += n;
        if self.unacked >= self.initial / 2 {
            let delta = self.unacked;
            self.size += delta as i64;
            self.unacked = 0;
            Some(delta)
        } else {
            None
        }
    }

    pub fn available(&self) -> u32 {
        self.size.clamp(0, MAX_WINDOW as i64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_follows_updates_and_settings() {
        let mut w = SendWindow::new(DEFAULT_WINDOW);
        assert_eq!(w.available(), 65_536);
        w.consume(65_536);
        assert_eq!(w.available(), 0);
        w.grant(1000).unwrap();
        assert_eq!(w.available(), 1000);
        // SETTINGS lowering the initial window may take it below zero.
        w.rebase(65_536, 0);
        assert_eq!(w.available(), 0);
        w.grant(64_536).unwrap();
        assert_eq!(w.available(), 0);
        w.grant(1).unwrap();
        assert_eq!(w.available(), 1);
        assert_eq!(w.grant(0), Err(FlowError::ZeroDelta));
        assert_eq!(
            w.grant(MAX_WINDOW),
            Err(FlowError::Overflow { delta: MAX_WINDOW })
        );
    }

    #[test]
    fn recv_window_refuses_overruns_and_acks_at_half() {
        let mut w = RecvWindow::new(DEFAULT_WINDOW);
        w.receive(40_000).unwrap();
        assert_eq!(w.release(30_000), None);
        assert_eq!(w.release(10_000), Some(40_000));
        assert_eq!(w.available(), 65_536);
        assert!(w.receive(65_537).is_err());
        w.receive(65_536).unwrap();
        assert!(matches!(w.receive(1), Err(FlowError::Overrun { .. })));
    }
}
