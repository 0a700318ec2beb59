//! Writing JSON straight into a byte buffer: quoted strings, integers, and an
//! object writer that places the commas, so the encoders build no value trees.

/// Appends `s` as a quoted JSON string (escaping `"`, `\` and control characters).
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

/// Appends the escaped body of a JSON string, without quotes.
pub(crate) fn push_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends an integer.
pub(crate) fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut v = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes one JSON object: `key` places the comma and the key, the caller the value.
pub(crate) struct Obj {
    first: bool,
}

impl Obj {
    /// Opens an object.
    pub(crate) fn open(out: &mut Vec<u8>) -> Obj {
        out.push(b'{');
        Obj { first: true }
    }

    /// Writes `"k":` (a key known to need no escaping), with a comma before it if needed.
    pub(crate) fn key(&mut self, out: &mut Vec<u8>, k: &str) {
        self.comma(out);
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
    }

    /// Writes a key that may need escaping (one taken from the record).
    pub(crate) fn key_escaped(&mut self, out: &mut Vec<u8>, k: &str) {
        self.comma(out);
        push_str(out, k);
        out.push(b':');
    }

    fn comma(&mut self, out: &mut Vec<u8>) {
        if !self.first {
            out.push(b',');
        }
        self.first = false;
    }

    /// `"k":"v"` with `v` escaped.
    pub(crate) fn str(&mut self, out: &mut Vec<u8>, k: &str, v: &str) {
        self.key(out, k);
        push_str(out, v);
    }

    /// `"k":v` with `v` already JSON.
    pub(crate) fn raw(&mut self, out: &mut Vec<u8>, k: &str, v: &str) {
        self.key(out, k);
        out.extend_from_slice(v.as_bytes());
    }

    /// `"k":n`.
    pub(crate) fn int(&mut self, out: &mut Vec<u8>, k: &str, v: i64) {
        self.key(out, k);
        push_i64(out, v);
    }

    /// `"k":{` and a writer for the inner object; close it with [`Obj::close`].
    pub(crate) fn obj(&mut self, out: &mut Vec<u8>, k: &str) -> Obj {
        self.key(out, k);
        Obj::open(out)
    }

    pub(crate) fn close(self, out: &mut Vec<u8>) {
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_serde_json() {
        for s in ["plain", "q\"b\\s", "nl\n\r\t\u{8}\u{c}", "\u{1}\u{1f}", "jörg ✓", ""] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn integers_and_objects() {
        let mut out = Vec::new();
        let mut o = Obj::open(&mut out);
        o.int(&mut out, "a", i64::MIN);
        o.int(&mut out, "b", 0);
        let mut inner = o.obj(&mut out, "c");
        inner.str(&mut out, "d", "x");
        inner.close(&mut out);
        o.key_escaped(&mut out, "e\"f");
        out.extend_from_slice(b"null");
        o.close(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":-9223372036854775808,"b":0,"c":{"d":"x"},"e\"f":null}"#);
    }
}
