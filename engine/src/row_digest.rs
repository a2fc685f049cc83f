//! [`RowDigest`]: an order-independent content digest of COPY text rows —
//! the sum, modulo 2^128, of the xxh3-128 of every row (its bytes without
//! the newline). Independent of compression, chunking and row order, so a
//! drill can compare what a restored table holds with what the backup read
//! (`ChunkEntry::row_digest` in the manifest; a table's digest is the sum
//! of its chunks'). Fed with buffers that may split a row anywhere: the
//! unfinished row is hashed by a streaming xxh3 state, never copied. Runs
//! wherever the caller's COPY bytes are handled (the chunk writer's CPU pool
//! job at backup time).

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

#[derive(Default)]
pub(crate) struct RowDigest {
    sum: u128,
    rows: u64,
    /// The row begun in an earlier buffer, if any.
    partial: Option<Box<Xxh3>>,
}

impl RowDigest {
    /// Adds the rows of `bytes`; a row not ended by a newline continues in
    /// the next call.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        if let Some(partial) = &mut self.partial {
            match memchr::memchr(b'\n', rest) {
                Some(end) => {
                    partial.update(&rest[..end]);
                    let row = partial.digest128();
                    self.partial = None;
                    self.add(row);
                    rest = &rest[end + 1..];
                }
                None => {
                    partial.update(rest);
                    return;
                }
            }
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            self.add(xxh3_128(&rest[start..end]));
            start = end + 1;
        }
        rest = &rest[start..];
        if !rest.is_empty() {
            let mut partial = Box::new(Xxh3::new());
            partial.update(rest);
            self.partial = Some(partial);
        }
    }

    fn add(&mut self, row: u128) {
        self.sum = self.sum.wrapping_add(row);
        self.rows += 1;
    }

    /// Rows ended so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The digest of every row (an unended last row counts as a row) and
    /// starts over.
    pub(crate) fn finish(&mut self) -> u128 {
        if let Some(partial) = self.partial.take() {
            self.add(partial.digest128());
        }
        self.rows = 0;
        std::mem::take(&mut self.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_in_pieces(text: &[u8], piece: usize) -> u128 {
        let mut digest = RowDigest::default();
        for part in text.chunks(piece) {
            digest.update(part);
        }
        digest.finish()
    }

    #[test]
    fn rows_split_across_buffers_give_the_same_digest() {
        let text = b"1\talice\n2\tbob\n3\t\\N\n10\ta longer row with tabs\tand more\n";
        let whole = digest_in_pieces(text, text.len());
        for piece in 1..text.len() {
            assert_eq!(
                digest_in_pieces(text, piece),
                whole,
                "pieces of {piece} bytes"
            );
        }
    }

    #[test]
    fn row_order_does_not_change_the_digest_but_content_does() {
        let a = digest_in_pieces(b"1\tx\n2\ty\n", 64);
        assert_eq!(a, digest_in_pieces(b"2\ty\n1\tx\n", 64));
        assert_ne!(a, digest_in_pieces(b"1\tx\n2\tz\n", 64));
        assert_ne!(a, digest_in_pieces(b"1\tx\n", 64));
    }

    #[test]
    fn a_table_split_in_chunks_sums_to_the_whole_tables_digest() {
        let whole = digest_in_pieces(b"1\n2\n3\n4\n", 3);
        let parts = digest_in_pieces(b"1\n2\n", 3).wrapping_add(digest_in_pieces(b"3\n4\n", 5));
        assert_eq!(whole, parts);
        assert_eq!(digest_in_pieces(b"", 1), 0);
    }

    #[test]
    fn rows_are_counted_as_they_end() {
        let mut digest = RowDigest::default();
        digest.update(b"a\nb");
        assert_eq!(digest.rows(), 1);
        digest.update(b"c\n");
        assert_eq!(digest.rows(), 2);
    }
}
