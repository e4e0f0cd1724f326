//! Messages built in a fixed stack buffer: error paths must not allocate.

/// A fixed-capacity byte buffer; text past its end is dropped.
pub struct MessageBuffer {
    bytes: [u8; 512],
    len: usize,
}

impl MessageBuffer {
    pub const fn new() -> Self {
        MessageBuffer { bytes: [0; 512], len: 0 }
    }

    fn push_byte(&mut self, byte: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }

    pub fn push_str(&mut self, text: &str) -> &mut Self {
        for &b in text.as_bytes() {
            self.push_byte(b);
        }
        self
    }

    /// Raw bytes (from the environment, say), control bytes shown as `?`.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.push_byte(if b.is_ascii_graphic() || b == b' ' { b } else { b'?' });
        }
        self
    }

    pub fn push_decimal(&mut self, mut value: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (value % 10) as u8;
            n += 1;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            self.push_byte(digits[n]);
        }
        self
    }

    pub fn push_hex(&mut self, value: usize) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.push_str("0x");
        let mut started = false;
        for shift in (0..usize::BITS / 4).rev().map(|i| i * 4) {
            let nibble = (value >> shift) & 0xf;
            if nibble != 0 || started || shift == 0 {
                started = true;
                self.push_byte(HEX[nibble]);
            }
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Text emitted one line at a time, each formatted in a [`MessageBuffer`]
/// (tables and reports longer than one buffer, without allocating).
pub struct Lines<'a> {
    emit: &'a mut dyn FnMut(&[u8]),
}

impl<'a> Lines<'a> {
    pub fn new(emit: &'a mut dyn FnMut(&[u8])) -> Self {
        Lines { emit }
    }

    /// Format one line (the newline is added) and emit it.
    pub fn line(&mut self, args: core::fmt::Arguments) {
        let mut m = MessageBuffer::new();
        let _ = core::fmt::Write::write_fmt(&mut m, args);
        (self.emit)(m.push_str("\n").as_bytes());
    }
}

impl Default for MessageBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Write for MessageBuffer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut m = MessageBuffer::new();
        m.push_str("a=").push_decimal(0).push_str(" b=").push_decimal(1234567).push_str(" p=").push_hex(0x7f00_dead_beef);
        assert_eq!(core::str::from_utf8(m.as_bytes()).unwrap(), "a=0 b=1234567 p=0x7f00deadbeef");
    }

    #[test]
    fn truncates_instead_of_overflowing() {
        let mut m = MessageBuffer::new();
        for _ in 0..100 {
            m.push_str("0123456789");
        }
        assert_eq!(m.as_bytes().len(), 512);
    }
}
