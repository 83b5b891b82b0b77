//! CURVE security with libzmq's own mechanism: key pairs kept in files, and a
//! ZAP handler that lets in only the clients whose public key it knows (the
//! ideas of CZMQ's `zcert` and `zauth`, in small).
//!
//! * [`Keys`]: a key pair (or a public key alone), made with
//!   `zmq_curve_keypair`, saved and read in `zcert`'s text format, so files
//!   made by CZMQ tools and by `curvekeys` are interchangeable: `NAME` holds
//!   the public key, `NAME_secret` both keys (mode 0600);
//! * [`Keys::make_server`] / [`Keys::make_client`]: the socket options of each
//!   side (a CURVE server refuses plain-text peers by itself: their handshake
//!   fails);
//! * [`Authenticator`]: an actor bound to `inproc://zeromq.zap.01` in the
//!   sockets' context that answers libzmq's ZAP requests (RFC 27): `200` for a
//!   CURVE client whose public key is in its set, `400` for anyone else.
//!
//! Bounds: a key file is read only if it is at most [`MAX_KEY_FILE`] bytes,
//! and a directory of public keys yields at most [`MAX_KEYS`] keys (from at
//! most four times as many entries); a ZAP
//! request that is not the RFC's shape is answered 500 and logged.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::actor::{Actor, Pipe};
use crate::log_limit::complain;
use crate::{Error, Message};

/// The largest key file read, in bytes.
pub const MAX_KEY_FILE: u64 = 64 << 10;
/// The most public keys read from one directory.
pub const MAX_KEYS: usize = 10_000;
/// The ZAP endpoint libzmq asks (RFC 27).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// A CURVE public key, with its secret key when we own it.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub public: [u8; 32],
    pub secret: Option<[u8; 32]>,
}

// Never print a secret key by accident.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys {{ public: {} }}", self.public_text())
    }
}

impl Keys {
    /// A new key pair.
    pub fn generate() -> Result<Keys, Error> {
        let pair = zmq::CurveKeyPair::new()?;
        Ok(Keys {
            public: pair.public_key,
            secret: Some(pair.secret_key),
        })
    }

    /// The public key as 40 Z85 characters.
    pub fn public_text(&self) -> String {
        z85(&self.public)
    }

    /// The secret key as 40 Z85 characters, if we have it.
    pub fn secret_text(&self) -> Option<String> {
        self.secret.as_ref().map(z85)
    }

    /// Writes `path` (the public key) and `path_secret` (both keys, readable
    /// by the owner only), in `zcert`'s format.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        write_key_file(path, &self.public_text(), None)?;
        if let Some(secret) = self.secret_text() {
            write_key_file(&secret_path(path), &self.public_text(), Some(&secret))?;
        }
        Ok(())
    }

    /// Reads a key file written by [`save`](Keys::save) or by CZMQ: the
    /// secret file gives both keys, the public file the public key alone.
    pub fn load(path: &Path) -> io::Result<Keys> {
        let text = read_small(path)?;
        let public = key_line(&text, "public-key")
            .ok_or_else(|| invalid(path, "no valid public-key line"))?;
        let secret = match text
            .lines()
            .any(|l| l.trim_start().starts_with("secret-key"))
        {
            true => Some(
                key_line(&text, "secret-key")
                    .ok_or_else(|| invalid(path, "the secret-key line is not a key"))?,
            ),
            false => None,
        };
        Ok(Keys { public, secret })
    }

    /// Makes `socket` a CURVE server with these keys (needs the secret key).
    pub fn make_server(&self, socket: &zmq::Socket) -> Result<(), Error> {
        let secret = self
            .secret
            .ok_or_else(|| Error::Protocol("a CURVE server needs its secret key".into()))?;
        socket.set_curve_server(true)?;
        socket.set_curve_secretkey(&secret)?;
        Ok(())
    }

    /// Makes `socket` a CURVE client with these keys, talking to the server
    /// whose public key is `server` (needs our secret key).
    pub fn make_client(&self, socket: &zmq::Socket, server: &[u8; 32]) -> Result<(), Error> {
        let secret = self
            .secret
            .ok_or_else(|| Error::Protocol("a CURVE client needs its secret key".into()))?;
        socket.set_curve_serverkey(server)?;
        socket.set_curve_publickey(&self.public)?;
        socket.set_curve_secretkey(&secret)?;
        Ok(())
    }
}

/// Where [`Keys::save`] puts the secret file for `path`.
pub fn secret_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("_secret");
    PathBuf::from(name)
}

/// A client's CURVE settings from the command line's key files: `keys` is
/// our key pair (the `_secret` file, or its public file beside it) and
/// `server` the server's public key file. Both or neither (`None`). Shared
/// by `broker-client` and `fileclient`.
pub fn load_client(
    keys: Option<&Path>,
    server: Option<&Path>,
) -> Result<Option<(Keys, [u8; 32])>, Error> {
    let (keys, server) = match (keys, server) {
        (None, None) => return Ok(None),
        (Some(keys), Some(server)) => (keys, server),
        _ => {
            return Err(Error::Protocol(
                "CURVE needs both --curve-keys and --curve-server-key".into(),
            ))
        }
    };
    let io = |e: std::io::Error| Error::Protocol(format!("CURVE key file: {e}"));
    let mut ours = Keys::load(keys).map_err(io)?;
    if ours.secret.is_none() {
        ours = Keys::load(&secret_path(keys)).map_err(io)?;
    }
    let server = Keys::load(server).map_err(io)?;
    Ok(Some((ours, server.public)))
}

/// The public keys in every file of `dir` (secret files are skipped, as are
/// files that hold no key), at most [`MAX_KEYS`].
pub fn load_public_keys(dir: &Path) -> io::Result<HashSet<[u8; 32]>> {
    let mut keys = HashSet::new();
    // Also a bound on the directory itself: a million junk files are not read.
    for entry in fs::read_dir(dir)?.take(MAX_KEYS * 4) {
        let path = entry?.path();
        let is_secret = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("_secret"));
        if is_secret || !path.is_file() {
            continue;
        }
        if let Ok(key) = Keys::load(&path) {
            keys.insert(key.public);
            if keys.len() >= MAX_KEYS {
                log::warn!(
                    "curve: more than {MAX_KEYS} keys in {}; the rest ignored",
                    dir.display()
                );
                break;
            }
        }
    }
    Ok(keys)
}

/// The running ZAP handler; dropping it stops it (then every new CURVE
/// connection in that context is refused: nobody answers ZAP).
pub struct Authenticator {
    _actor: Actor,
}

impl Authenticator {
    /// Starts answering ZAP requests in `context`: CURVE clients whose
    /// public key is in `allowed` get 200, everyone else 400. `verbose` logs
    /// every decision.
    pub fn start(
        context: &zmq::Context,
        allowed: HashSet<[u8; 32]>,
        verbose: bool,
    ) -> Result<Authenticator, Error> {
        let actor = Actor::new(context, move |pipe| {
            if let Err(e) = serve_zap(pipe, &allowed, verbose) {
                log::error!("curve: ZAP handler: {e}");
            }
        })?;
        Ok(Authenticator { _actor: actor })
    }
}

fn serve_zap(pipe: &Pipe, allowed: &HashSet<[u8; 32]>, verbose: bool) -> Result<(), Error> {
    let handler = crate::socket::new(pipe.context(), zmq::REP)
        .linger(0)
        .max_message_size(4096)
        .bind(ZAP_ENDPOINT);
    // Signal even when the bind failed, so `Actor::new` returns; then report.
    pipe.signal(u8::from(handler.is_err()))?;
    let handler = handler?;
    while pipe.poll(&[&handler], -1)?.is_some() {
        let request = Message::recv_now(&handler)?;
        let reply = zap_reply(&request, allowed, verbose);
        reply.send_or_drop(&handler)?;
    }
    Ok(())
}

/// The answer to one ZAP request (RFC 27: version, request id, domain,
/// address, identity, mechanism, credentials…).
fn zap_reply(request: &Message, allowed: &HashSet<[u8; 32]>, verbose: bool) -> Message {
    let frames: Vec<&[u8]> = request.iter().collect();
    let request_id = frames.get(1).copied().unwrap_or_default();
    let answer = |code: &str, text: &str, user: &str| {
        Message::from_frames([
            b"1.0" as &[u8],
            request_id,
            code.as_bytes(),
            text.as_bytes(),
            user.as_bytes(),
            b"",
        ])
    };
    if frames.len() < 6 || frames[0] != b"1.0" {
        complain(format_args!(
            "curve: malformed ZAP request: {}",
            request.summary()
        ));
        return answer("500", "malformed request", "");
    }
    let address = String::from_utf8_lossy(frames[3]);
    let mechanism = frames[5];
    let key: Option<[u8; 32]> = match (mechanism, frames.get(6)) {
        (b"CURVE", Some(credential)) => (*credential).try_into().ok(),
        _ => None,
    };
    match key {
        Some(key) if allowed.contains(&key) => {
            let user = z85(&key);
            if verbose {
                log::info!(
                    "curve: allowed {user} from {}",
                    crate::message::show(address.as_bytes())
                );
            }
            answer("200", "OK", &user)
        }
        _ => {
            if verbose {
                complain(format_args!(
                    "curve: refused {} client from {}",
                    crate::message::show(mechanism),
                    crate::message::show(address.as_bytes())
                ));
            }
            answer("400", "not allowed", "")
        }
    }
}

fn z85(key: &[u8; 32]) -> String {
    // 32 bytes are a multiple of 4: encoding cannot fail.
    zmq::z85_encode(key).unwrap_or_default()
}

/// The 32-byte key in a `name = "<40 Z85 characters>"` line.
fn key_line(text: &str, name: &str) -> Option<[u8; 32]> {
    let line = text.lines().map(str::trim).find(|l| l.starts_with(name))?;
    let value = line.split_once('=')?.1.trim().trim_matches('"');
    if value.len() != 40 {
        return None;
    }
    zmq::z85_decode(value).ok()?.try_into().ok()
}

fn write_key_file(path: &Path, public: &str, secret: Option<&str>) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let kind = if secret.is_some() { "Secret" } else { "Public" };
    let mut text = format!(
        "#   ****  Generated by zguide curvekeys  ****\n\
         #   ZeroMQ CURVE {kind} Certificate\n"
    );
    if secret.is_some() {
        text.push_str("#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n");
    } else {
        text.push_str("#   Exchange securely, or check its contents after the exchange.\n");
    }
    text.push_str("\nmetadata\ncurve\n");
    text.push_str(&format!("    public-key = \"{public}\"\n"));
    if let Some(secret) = secret {
        text.push_str(&format!("    secret-key = \"{secret}\"\n"));
    }
    let mode = if secret.is_some() { 0o600 } else { 0o644 };
    // A secret file is created with its final mode, never readable by others
    // for a moment; an old file is replaced, not rewritten in place.
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())
}

fn read_small(path: &Path) -> io::Result<String> {
    let size = fs::metadata(path)?.len();
    if size > MAX_KEY_FILE {
        return Err(invalid(path, "larger than a key file can be"));
    }
    fs::read_to_string(path)
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zguide-curve-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn keys_survive_a_round_trip_through_their_files() {
        let dir = temp_dir("files");
        let keys = Keys::generate().unwrap();
        keys.save(&dir.join("server")).unwrap();
        assert_eq!(Keys::load(&dir.join("server_secret")).unwrap(), keys);
        let public = Keys::load(&dir.join("server")).unwrap();
        assert_eq!(public.public, keys.public);
        assert_eq!(public.secret, None, "the public file holds no secret");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("server_secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "secret file mode {mode:o}");
        assert!(!format!("{keys:?}").contains(&keys.secret_text().unwrap()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_of_public_keys_skips_secrets_and_junk() {
        let dir = temp_dir("dir");
        let (a, b) = (Keys::generate().unwrap(), Keys::generate().unwrap());
        a.save(&dir.join("a")).unwrap();
        b.save(&dir.join("b")).unwrap();
        fs::write(dir.join("junk"), "public-key = \"short\"\n").unwrap();
        let keys = load_public_keys(&dir).unwrap();
        assert_eq!(keys, HashSet::from([a.public, b.public]));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn zap_allows_known_curve_keys_only() {
        let known = Keys::generate().unwrap();
        let stranger = Keys::generate().unwrap();
        let allowed = HashSet::from([known.public]);
        let request = |mechanism: &str, key: &[u8]| {
            Message::from_frames([
                b"1.0" as &[u8],
                b"7",
                b"",
                b"127.0.0.1",
                b"",
                mechanism.as_bytes(),
                key,
            ])
        };
        let code = |reply: Message| reply.iter().nth(2).unwrap_or_default().to_vec();
        assert_eq!(
            code(zap_reply(&request("CURVE", &known.public), &allowed, true)),
            b"200"
        );
        assert_eq!(
            code(zap_reply(
                &request("CURVE", &stranger.public),
                &allowed,
                true
            )),
            b"400"
        );
        assert_eq!(
            code(zap_reply(&request("PLAIN", &known.public), &allowed, true)),
            b"400"
        );
        assert_eq!(
            code(zap_reply(&request("CURVE", b"short"), &allowed, true)),
            b"400"
        );
        let garbage = Message::from_frames(["2.0", "7"]);
        assert_eq!(code(zap_reply(&garbage, &allowed, true)), b"500");
        // The request id is echoed, so libzmq can match the answer.
        let reply = zap_reply(&request("CURVE", &known.public), &allowed, false);
        assert_eq!(reply.iter().nth(1), Some(&b"7"[..]));
    }

    #[test]
    fn client_settings_need_both_files_and_find_the_secret_beside() {
        let dir = temp_dir("client");
        let (ours, server) = (Keys::generate().unwrap(), Keys::generate().unwrap());
        ours.save(&dir.join("ours")).unwrap();
        server.save(&dir.join("server")).unwrap();
        assert!(load_client(None, None).unwrap().is_none());
        let (keys, server_public) = load_client(Some(&dir.join("ours")), Some(&dir.join("server")))
            .unwrap()
            .expect("both given");
        assert_eq!((keys, server_public), (ours.clone(), server.public));
        assert!(load_client(Some(&dir.join("ours")), None).is_err());
        assert!(load_client(None, Some(&dir.join("server"))).is_err());
        // A secret file alone in a trust directory trusts nobody.
        let trust = dir.join("trust");
        fs::create_dir_all(&trust).unwrap();
        fs::copy(dir.join("ours_secret"), trust.join("x_secret")).unwrap();
        fs::create_dir_all(trust.join("sub")).unwrap();
        assert!(load_public_keys(&trust).unwrap().is_empty());
        // Key files up to 64 KiB are read; larger ones are not.
        let text = fs::read_to_string(dir.join("server")).unwrap();
        let padded = |size: u64| format!("{text}{}", "#".repeat(size as usize - text.len()));
        fs::write(dir.join("big"), padded(MAX_KEY_FILE)).unwrap();
        assert_eq!(Keys::load(&dir.join("big")).unwrap().public, server.public);
        fs::write(dir.join("big"), padded(MAX_KEY_FILE + 1)).unwrap();
        assert!(Keys::load(&dir.join("big")).is_err());
        assert!(format!("{ours:?}").contains(&ours.public_text()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn zap_requests_need_six_frames_and_version_1_0() {
        let allowed = HashSet::new();
        let code = |frames: &[&[u8]]| {
            let reply = zap_reply(
                &Message::from_frames(frames.iter().copied()),
                &allowed,
                false,
            );
            let code = reply.iter().nth(2).unwrap_or_default().to_vec();
            code
        };
        let six: [&[u8]; 6] = [b"1.0", b"7", b"", b"127.0.0.1", b"", b"CURVE"];
        assert_eq!(code(&six), b"400", "no key: not allowed");
        assert_eq!(code(&six[..5]), b"500", "five frames: malformed");
        let mut other = six.to_vec();
        other[0] = b"2.0";
        other.push(&[0; 32]);
        assert_eq!(code(&other), b"500", "another version: malformed");
    }

    /// Real handshakes: the ZAP handler lets a known key in and keeps a
    /// stranger out; the sockets get the keys they were given.
    #[test]
    fn a_curve_server_with_the_handler_admits_known_keys_only() {
        let context = zmq::Context::new();
        let (server_keys, known, stranger) = (
            Keys::generate().unwrap(),
            Keys::generate().unwrap(),
            Keys::generate().unwrap(),
        );
        let _zap = Authenticator::start(&context, HashSet::from([known.public]), false).unwrap();
        let server = context.socket(zmq::ROUTER).unwrap();
        server.set_linger(0).unwrap();
        server_keys.make_server(&server).unwrap();
        assert!(server.is_curve_server().unwrap());
        server.set_zap_domain("global").unwrap();
        server.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = server.get_last_endpoint().unwrap().unwrap();
        let client = |keys: &Keys| {
            let socket = context.socket(zmq::DEALER).unwrap();
            socket.set_linger(0).unwrap();
            keys.make_client(&socket, &server_keys.public).unwrap();
            assert_eq!(socket.get_curve_serverkey().unwrap(), server_keys.public);
            socket.connect(&endpoint).unwrap();
            socket
        };
        // The stranger first.
        let outsider = client(&stranger);
        outsider.send("let me in", 0).unwrap();
        let insider = client(&known);
        insider.send("hello", 0).unwrap();
        server.set_rcvtimeo(5000).unwrap();
        let frames = server
            .recv_multipart(0)
            .expect("the known client's message");
        assert_eq!(frames[1], b"hello");
        server.set_rcvtimeo(300).unwrap();
        assert!(
            server.recv_multipart(0).is_err(),
            "the stranger got through"
        );
    }
}
