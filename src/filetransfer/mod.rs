//! Study part 4: a real file-transfer tool on ZeroMQ, SFT/1
//! (`zguide/file-transfer-protocol.md`), behind the programs `fileserver`
//! and `fileclient`.
//!
//! The guide's `fileio3` (§47, [`crate::fileio`]) shows the core idea:
//! credit-based flow, the client keeping a few chunk requests in flight so
//! the pipe stays full and nothing piles up. This module turns it into a tool:
//! named files and whole trees, a listing, streaming to and from disk in
//! bounded memory, per-chunk zstd compression, CURVE, a BLAKE3 hash of every
//! chunk and of every file, and resume after either side is killed.
//!
//! | module | what it is |
//! |---|---|
//! | [`protocol`] | SFT/1 commands as values and their frames; name checks; every bound checked on the way in |
//! | [`server`] | the server: one ROUTER thread, a pool of reader threads shared fairly between clients, path resolution that stays inside the served directory, a hash cache |
//! | [`tree`] | the file's BLAKE3 tree: chunk hashes as subtree chaining values, the whole-file hash derived from them, the server's cached leaves |
//! | [`client`] | the client: LIST, STAT, a window of FETCHes, verification, an in-order writer with a reorder buffer, `.part` files with a resume state, reconnect on silence, progress |
//!
//! ## Exit codes of `fileclient`
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done: every file fetched and verified (or already up to date) |
//! | 1 | the server refused: 403 path refused, 404 no such file, 413, 400, or our CURVE key |
//! | 2 | no answer: the server was silent through every retry |
//! | 3 | integrity: a chunk kept arriving corrupt, or the whole file's hash did not match (the `.part` is removed) |
//! | 4 | local: the destination cannot be written, or bad settings |
//! | 64 | usage: bad command line |
//! | 130 | interrupted (Ctrl-C, SIGTERM): the verified prefix is saved for a resume |

pub mod client;
pub mod protocol;
pub mod server;
pub mod tree;
