//! The file's BLAKE3 tree, as SFT/1 uses it
//! (`zguide/file-transfer-protocol.md`, "Hashes").
//!
//! BLAKE3 hashes a file as a binary tree of 1 KiB chunks. A CHUNK's hash is
//! not BLAKE3 of its bytes alone but the *chaining value* of the subtree
//! those bytes are in the whole file's tree ([`chunk_hash`]). That costs
//! nothing more to compute and buys two things:
//!
//! * the client checks each chunk with one pass over its bytes and derives
//!   the whole-file hash from the chunk hashes ([`FileHash`]), where it used
//!   to hash every byte twice;
//! * the server, which hashes the whole file once for STAT anyway, keeps the
//!   chaining values of the file's pieces ([`Leaves`]) and answers a FETCH
//!   without hashing what it sends.
//!
//! The price is a rule on FETCH: a chunk must be a subtree ([`is_subtree`]):
//! its offset a multiple of 1 KiB and its length at most the largest power
//! of two dividing the offset. A client asking for power-of-two chunks from
//! a power-of-two-aligned start never notices.

use super::protocol::{self, HASH_LEN};

/// BLAKE3's input unit: a chunk's offset is a multiple of it.
pub const SUBTREE_UNIT: u64 = blake3::CHUNK_LEN as u64;

/// The longest chunk that may start at `offset` (`None`: no limit, at 0);
/// an offset that is not a multiple of [`SUBTREE_UNIT`] has no valid chunk
/// at all (see [`is_subtree`]).
///
/// A CHUNK's hash is the BLAKE3 *chaining value* of its bytes as the subtree
/// of the file's hash tree that starts at its offset, so the client derives
/// the whole-file hash from the chunk hashes it checked instead of hashing
/// every byte a second time. A subtree at offset `o > 0` holds at most the
/// largest power of two dividing `o` bytes.
pub fn max_chunk_at(offset: u64) -> Option<u64> {
    (offset > 0).then(|| 1u64 << offset.trailing_zeros())
}

/// Whether `length` bytes at `offset` form a subtree of a file's BLAKE3 tree
/// (what a FETCH must ask for: the server answers anything else 400).
pub fn is_subtree(offset: u64, length: u64) -> bool {
    offset.is_multiple_of(SUBTREE_UNIT) && max_chunk_at(offset).is_none_or(|most| length <= most)
}

/// SFT/1's chunk hash: the non-root BLAKE3 chaining value of `data` as the
/// subtree at `offset`, or BLAKE3 of nothing for an empty chunk (past the
/// end of a file). The caller has checked [`is_subtree`]`(offset, len)`:
/// BLAKE3 asserts it.
pub fn chunk_hash(offset: u64, data: &[u8]) -> [u8; HASH_LEN] {
    use blake3::hazmat::HasherExt;
    if data.is_empty() {
        return protocol::hash(data);
    }
    debug_assert!(is_subtree(offset, data.len() as u64));
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(data);
    hasher.finalize_non_root()
}

/// The whole-file BLAKE3 built from the chunk hashes ([`chunk_hash`]) of the
/// file's pieces, pushed in order: the same stack of subtrees BLAKE3 keeps
/// itself, so the result equals [`hash`] of the whole file whatever the
/// pieces' sizes, as long as each is a subtree ([`is_subtree`]) and only the
/// last is shorter than a power of two.
#[derive(Debug, Clone)]
pub struct FileHash {
    size: u64,
    length: u64,
    stack: Vec<[u8; HASH_LEN]>,
    /// The root hash when one piece is the whole file (a lone subtree's
    /// chaining value is not its root hash).
    whole: Option<[u8; HASH_LEN]>,
}

impl FileHash {
    /// For a file of `size` bytes.
    pub fn new(size: u64) -> FileHash {
        FileHash {
            size,
            length: 0,
            stack: Vec::new(),
            whole: None,
        }
    }

    /// Bytes pushed so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Adds the next piece: its bytes and their [`chunk_hash`] at
    /// [`length`](FileHash::length).
    pub fn push(&mut self, data: &[u8], chunk_hash: [u8; HASH_LEN]) {
        if self.length == 0 && !data.is_empty() && data.len() as u64 == self.size {
            self.whole = Some(protocol::hash(data));
        }
        self.push_subtree(data.len() as u64, chunk_hash);
    }

    /// Adds the next piece by its length and [`chunk_hash`] alone (a piece
    /// that is the whole file needs its bytes: use [`push`](FileHash::push)).
    pub fn push_subtree(&mut self, length: u64, chunk_hash: [u8; HASH_LEN]) {
        if length == 0 {
            return;
        }
        // Merge the finished subtrees: as many stay as the number of
        // BLAKE3 chunks so far has one bits (BLAKE3's own rule).
        let chunks = self.length / SUBTREE_UNIT;
        while self.stack.len() > chunks.count_ones() as usize {
            self.merge_top();
        }
        self.stack.push(chunk_hash);
        self.length += length;
    }

    fn merge_top(&mut self) {
        use blake3::hazmat::{merge_subtrees_non_root, Mode};
        if let (Some(right), Some(left)) = (self.stack.pop(), self.stack.pop()) {
            self.stack
                .push(merge_subtrees_non_root(&left, &right, Mode::Hash));
        }
    }

    /// The whole-file hash (meaningful once every byte was pushed).
    pub fn finalize(mut self) -> [u8; HASH_LEN] {
        use blake3::hazmat::{merge_subtrees_root, Mode};
        if let Some(whole) = self.whole {
            return whole;
        }
        if self.length == 0 {
            return protocol::hash(&[]);
        }
        while self.stack.len() > 2 {
            self.merge_top();
        }
        match (self.stack.pop(), self.stack.pop()) {
            (Some(right), Some(left)) => *merge_subtrees_root(&left, &right, Mode::Hash).as_bytes(),
            // One piece shorter than the file: not the file's hash, and
            // never equal to it.
            (Some(lone), None) => lone,
            _ => protocol::hash(&[]),
        }
    }
}

/// A cached file's pieces (leaves): at most this many per file.
pub const MAX_LEAVES: u64 = 16_384;
/// The smallest leaf (64 KiB: 16 MiB of file per 8 KiB of hashes).
pub const MIN_LEAF: u64 = 64 << 10;

/// The chaining values of a file's pieces of [`leaf`](Leaves::leaf) bytes
/// (the last one may be short), from which the hash of any chunk made of
/// whole pieces is merged without reading the file ([`Leaves::chunk_hash`]).
/// The server computes them in the pass that hashes the whole file for STAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaves {
    leaf: u64,
    size: u64,
    hashes: Vec<[u8; HASH_LEN]>,
}

impl Leaves {
    /// The leaf size for a file of `size` bytes: a power of two from
    /// [`MIN_LEAF`], so that there are at most [`MAX_LEAVES`].
    pub fn leaf_for(size: u64) -> u64 {
        size.div_ceil(MAX_LEAVES).next_power_of_two().max(MIN_LEAF)
    }

    /// Hashes the first `size` bytes `read` gives (`read(offset, piece)`
    /// fills `piece` from `offset`, or fails), reading through `buffer`
    /// (grown to 64 KiB if smaller): the whole-file BLAKE3, and the leaves
    /// when the file is longer than one leaf.
    pub fn hash_file<E>(
        size: u64,
        buffer: &mut Vec<u8>,
        mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<([u8; HASH_LEN], Option<Leaves>), E> {
        use blake3::hazmat::HasherExt;
        if buffer.len() < 64 << 10 {
            buffer.resize(64 << 10, 0);
        }
        let capacity = buffer.len() as u64;
        let leaf = Leaves::leaf_for(size);
        if size <= leaf {
            // One leaf is the whole file: its root hash is what STAT says,
            // and FETCHes of a file this small just hash what they send.
            let mut hasher = blake3::Hasher::new();
            let mut offset = 0;
            while offset < size {
                let piece = &mut buffer[..(size - offset).min(capacity) as usize];
                read(offset, piece)?;
                hasher.update(piece);
                offset += piece.len() as u64;
            }
            return Ok((*hasher.finalize().as_bytes(), None));
        }
        let mut whole = FileHash::new(size);
        let mut hashes = Vec::with_capacity(size.div_ceil(leaf) as usize);
        let mut start = 0;
        while start < size {
            let end = (start + leaf).min(size);
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(start);
            let mut offset = start;
            while offset < end {
                let piece = &mut buffer[..(end - offset).min(capacity) as usize];
                read(offset, piece)?;
                hasher.update(piece);
                offset += piece.len() as u64;
            }
            let cv = hasher.finalize_non_root();
            whole.push_subtree(end - start, cv);
            hashes.push(cv);
            start = end;
        }
        Ok((whole.finalize(), Some(Leaves { leaf, size, hashes })))
    }

    /// The leaf size.
    pub fn leaf(&self) -> u64 {
        self.leaf
    }

    /// Bytes of memory the hashes take.
    pub fn bytes(&self) -> usize {
        self.hashes.len() * HASH_LEN
    }

    /// The [`chunk_hash`] of `length` bytes at `offset`, if they are whole
    /// leaves (the last one may end at the end of the file) and a subtree;
    /// `None` otherwise (the caller hashes the bytes).
    pub fn chunk_hash(&self, offset: u64, length: u64) -> Option<[u8; HASH_LEN]> {
        let end = offset.checked_add(length)?;
        let whole_leaves = offset.is_multiple_of(self.leaf)
            && (length.is_multiple_of(self.leaf) || end == self.size);
        (length > 0 && end <= self.size && whole_leaves && is_subtree(offset, length))
            .then(|| self.subtree(offset, length))
    }

    /// Merges the leaves of a subtree along BLAKE3's own split: the left
    /// part is the largest power of two of 1 KiB chunks shorter than the
    /// whole, so every split falls on a leaf boundary.
    fn subtree(&self, offset: u64, length: u64) -> [u8; HASH_LEN] {
        use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, Mode};
        if length <= self.leaf {
            return self.hashes[(offset / self.leaf) as usize];
        }
        let left = left_subtree_len(length);
        merge_subtrees_non_root(
            &self.subtree(offset, left),
            &self.subtree(offset + left, length - left),
            Mode::Hash,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filetransfer::protocol::hash;

    /// Splits `size` bytes into pieces as a client does: `chunk` bytes, cut
    /// short where a subtree must end, the sizes cycling through `chunks`
    /// (a resume with another `--chunk-size`).
    fn pieces(size: u64, chunks: &[u64]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut offset = 0;
        let mut i = 0;
        while offset < size {
            let chunk = chunks[i % chunks.len()];
            let length = max_chunk_at(offset)
                .map_or(chunk, |most| most.min(chunk))
                .min(size - offset);
            assert!(is_subtree(offset, length));
            out.push((offset, length));
            offset += length;
            i += 1;
        }
        out
    }

    #[test]
    fn the_file_hash_from_chunk_hashes_is_blake3_of_the_file() {
        let data: Vec<u8> = (0..600_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
        let sizes = [
            0, 1, 1023, 1024, 1025, 4096, 65_536, 65_537, 200_000, 600_000,
        ];
        let chunkings: [&[u64]; 5] = [
            &[1024],
            &[4096],
            &[65_536],
            &[1 << 20],
            &[65_536, 4096, 16_384],
        ];
        for size in sizes {
            let file = &data[..size];
            for chunks in chunkings {
                let mut whole = FileHash::new(size as u64);
                for (offset, length) in pieces(size as u64, chunks) {
                    let piece = &file[offset as usize..(offset + length) as usize];
                    whole.push(piece, chunk_hash(offset, piece));
                }
                assert_eq!(whole.length(), size as u64);
                assert_eq!(
                    whole.finalize(),
                    hash(file),
                    "size {size}, chunks {chunks:?}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_chunk_hash_or_a_missing_piece_changes_the_file_hash() {
        let data = vec![5u8; 300_000];
        let parts = pieces(300_000, &[65_536]);
        let mut altered = FileHash::new(300_000);
        let mut short = FileHash::new(300_000);
        for (n, (offset, length)) in parts.iter().enumerate() {
            let piece = &data[*offset as usize..(*offset + *length) as usize];
            let mut cv = chunk_hash(*offset, piece);
            if n == 2 {
                cv[0] ^= 1;
            }
            altered.push(piece, cv);
            if n + 1 < parts.len() {
                short.push(piece, chunk_hash(*offset, piece));
            }
        }
        assert_ne!(altered.finalize(), hash(&data));
        assert_ne!(short.finalize(), hash(&data));
        // A lone piece that is not the whole file is not its hash either.
        let mut lone = FileHash::new(300_000);
        lone.push(&data[..65_536], chunk_hash(0, &data[..65_536]));
        assert_ne!(lone.finalize(), hash(&data));
    }

    #[test]
    fn subtrees_are_aligned_and_no_longer_than_their_offset_allows() {
        assert!(is_subtree(0, 4 << 20));
        assert!(is_subtree(1 << 20, 1 << 20));
        assert!(is_subtree(1 << 20, 100));
        assert!(!is_subtree(1 << 20, (1 << 20) + 1));
        assert!(!is_subtree(3 << 10, 4 << 10));
        assert!(is_subtree(3 << 10, 1 << 10));
        assert!(!is_subtree(4, 100));
        assert!(!is_subtree(1000, 10));
        assert_eq!(max_chunk_at(0), None);
        assert_eq!(max_chunk_at(6 << 10), Some(2 << 10));
        // The chunk hash depends on where the chunk is.
        assert_ne!(chunk_hash(0, &[1; 1024]), chunk_hash(1024, &[1; 1024]));
        assert_eq!(chunk_hash(1024, &[]), hash(&[]));
    }

    #[test]
    fn leaves_give_every_chunk_hash_without_the_bytes() {
        let size = 3 * 65_536 * 4 + 12_345;
        let data: Vec<u8> = (0..size as u32).map(|i| (i * 31 + i / 777) as u8).collect();
        let mut buffer = vec![0u8; 10_000];
        let (whole, leaves) = Leaves::hash_file(size, &mut buffer, |offset, piece: &mut [u8]| {
            let at = offset as usize;
            piece.copy_from_slice(&data[at..at + piece.len()]);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(whole, protocol::hash(&data));
        let leaves = leaves.expect("longer than a leaf");
        assert_eq!(leaves.leaf(), MIN_LEAF);
        // 13 leaves of 64 KiB (the last one short), 32 bytes each.
        assert_eq!(leaves.bytes(), 13 * HASH_LEN);
        for chunks in [&[65_536u64][..], &[131_072], &[1 << 20], &[262_144, 65_536]] {
            for (offset, length) in pieces(size, chunks) {
                let piece = &data[offset as usize..(offset + length) as usize];
                assert_eq!(
                    leaves.chunk_hash(offset, length),
                    Some(chunk_hash(offset, piece)),
                    "{offset} {length}"
                );
            }
        }
        // Not whole leaves, past the end, not a subtree, empty: hash the bytes.
        assert_eq!(leaves.chunk_hash(1024, 1024), None);
        assert_eq!(leaves.chunk_hash(0, 1000), None);
        assert_eq!(leaves.chunk_hash(65_536, size), None);
        assert_eq!(leaves.chunk_hash(65_536 * 3, 131_072), None);
        assert_eq!(leaves.chunk_hash(0, 0), None);
        assert_eq!(leaves.chunk_hash(u64::MAX - 10, 100), None);
        // A file of one leaf keeps none; its hash is still BLAKE3's.
        let (small, none) = Leaves::hash_file(5, &mut buffer, |_, piece: &mut [u8]| {
            piece.copy_from_slice(b"alpha");
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!((small, none), (protocol::hash(b"alpha"), None));
    }

    #[test]
    fn hash_file_grows_a_small_buffer_to_64_kib_and_keeps_a_larger_one() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for (given, kept) in [(0, 65_536), (10_000, 65_536), (1 << 20, 1 << 20)] {
            let mut buffer = vec![0u8; given];
            let size = data.len() as u64;
            let (whole, _) = Leaves::hash_file(size, &mut buffer, |offset, piece: &mut [u8]| {
                let at = offset as usize;
                piece.copy_from_slice(&data[at..at + piece.len()]);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(whole, protocol::hash(&data), "buffer of {given}");
            assert_eq!(buffer.len(), kept, "buffer of {given}");
        }
    }

    #[test]
    fn leaves_stay_few_for_huge_files() {
        assert_eq!(Leaves::leaf_for(1), MIN_LEAF);
        assert_eq!(Leaves::leaf_for(1 << 30), MIN_LEAF);
        assert_eq!(Leaves::leaf_for(4 << 30), 256 << 10);
        let huge = 1u64 << 40;
        assert_eq!(huge.div_ceil(Leaves::leaf_for(huge)), MAX_LEAVES);
        assert!(Leaves::leaf_for(u64::MAX).is_power_of_two());
    }
}
