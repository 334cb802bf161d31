//! Reading a file line by line with a cap on the line length, so that a
//! file without line breaks (or with one huge line) never fills memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// What the next line is.
#[derive(Debug, PartialEq)]
pub(crate) enum Next<'a> {
    /// A line (with its line break, if it had one).
    Line(&'a [u8]),
    /// A line longer than the cap, skipped; its length in bytes (without
    /// the line break).
    TooLong(u64),
}

/// Lines of `R`, each at most `max` bytes (without the line break).
pub(crate) struct Lines<R> {
    reader: R,
    max: usize,
    buffer: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub(crate) fn new(reader: R, max: usize) -> Lines<R> {
        Lines {
            reader,
            max,
            buffer: Vec::new(),
        }
    }

    /// The next line, or `None` at the end.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Next<'_>>> {
        self.buffer.clear();
        let mut limited = (&mut self.reader).take(self.max as u64 + 1);
        if limited.read_until(b'\n', &mut self.buffer).await? == 0 {
            return Ok(None);
        }
        if self.buffer.last() == Some(&b'\n') || self.buffer.len() <= self.max {
            return Ok(Some(Next::Line(&self.buffer)));
        }
        // Too long: skip the rest of it, and give the memory back.
        let mut length = self.buffer.len() as u64;
        self.buffer = Vec::new();
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    length += end as u64;
                    self.reader.consume(end + 1);
                    break;
                }
                None => {
                    let n = chunk.len();
                    length += n as u64;
                    self.reader.consume(n);
                }
            }
        }
        Ok(Some(Next::TooLong(length)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, u64>> {
        // A tiny buffer, so that lines span many reads.
        let reader = tokio::io::BufReader::with_capacity(3, input);
        let mut lines = Lines::new(reader, max);
        let mut out = Vec::new();
        while let Some(next) = lines.next().await.unwrap() {
            out.push(match next {
                Next::Line(line) => Ok(line.to_vec()),
                Next::TooLong(n) => Err(n),
            });
        }
        out
    }

    #[tokio::test]
    async fn lines_and_the_cap() {
        assert_eq!(all(b"", 4).await, vec![]);
        assert_eq!(
            all(b"ab\n\ncd", 4).await,
            vec![Ok(b"ab\n".to_vec()), Ok(b"\n".to_vec()), Ok(b"cd".to_vec())]
        );
        // Exactly the cap fits, with or without a line break.
        assert_eq!(
            all(b"abcd\nabcd", 4).await,
            vec![Ok(b"abcd\n".to_vec()), Ok(b"abcd".to_vec())]
        );
        // One byte more is skipped whole, and the next line is read.
        assert_eq!(
            all(b"abcde\nxy\nabcdefghijk", 4).await,
            vec![Err(5), Ok(b"xy\n".to_vec()), Err(11)]
        );
    }
}
