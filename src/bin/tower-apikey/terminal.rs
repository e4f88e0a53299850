//! What the tool reads and writes: the key on stdin, lines on stdout, and a failure's exit
//! status and reason.

use std::io::{self, Read, Write};

use zeroize::Zeroizing;

/// A failed command: its exit status and the reason for stderr.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Bad usage or input: exit 2.
    pub(crate) fn usage(error: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: error.to_string(),
        }
    }

    /// Refused by a rule: exit 1.
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

/// The key on stdin, less one trailing newline.
pub(crate) fn read_key() -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut key = Zeroizing::new(Vec::new());
    io::stdin()
        .read_to_end(&mut key)
        .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
    if key.ends_with(b"\n") {
        key.pop();
        if key.ends_with(b"\r") {
            key.pop();
        }
    }
    if key.is_empty() {
        return Err(Failure::usage("no key on stdin"));
    }
    Ok(key)
}

pub(crate) fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = Zeroizing::new(Vec::with_capacity(line.len() + 1));
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    write_stdout(&out)
}

pub(crate) fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::usage(format!("writing stdout: {e}")))
}
