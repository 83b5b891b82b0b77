//! §34 Model Two: Brutal Shotgun Massacre (`flclient2.c`): a DEALER client
//! that sends every request to all its servers at once and takes the first
//! reply.
//!
//! `flclient2 <endpoint>…` connects one DEALER socket to every endpoint,
//! then sends 10,000 requests (`random name`) one after another. Each request
//! `[""][sequence][body]` is sent once per server (the DEALER deals the
//! copies out round-robin, one to each), and the client waits up to 2500 ms
//! for a reply `[""][sequence][OK]` with the same sequence, dropping the
//! others. At the end it prints `Average round trip cost: N usec`; if a
//! request gets no reply, `E: name service not available, aborting`. Without
//! arguments it prints `I: syntax: <program> <endpoint> ...`. Run it beside
//! one to three `flserver2`:
//!
//! ```text
//! flserver2 tcp://*:5555 &  flserver2 tcp://*:5556 &  flserver2 tcp://*:5557 &
//! flclient2 tcp://localhost:5555 tcp://localhost:5556 tcp://localhost:5557
//! ```
//!
//! `ZGUIDE_REQUESTS` sets the number of requests (default 10,000, the C's).
//!
//! `flclient2 --cpp <endpoint>…` speaks the dialect of the guide's
//! `flserver2.cpp`: the sequence number as a 4-byte big-endian integer
//! (zmqpp's `push_back(uint)`) instead of decimal text. The C++ server
//! asserts on a 4-byte frame, so without `--cpp` it dies on our first
//! request; our `flserver2` echoes the frame it got and serves both.
//!
//! Differs from the C: a reply that is not three frames made the C `assert`
//! and die; here it is logged (sparsely, escaped) and dropped. Sends never
//! block: a copy for a server whose queue is full is dropped. After
//! `E: name service not available, aborting` the client exits 1 without an
//! average (the C printed an average over requests never made and exited 0).
//! LINGER 0: requests queued for a dead server are dropped at exit.
//! Ctrl-C/SIGTERM exits 0.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::flcliapi;
use zguide::log_limit::Sparse;
use zguide::{helpers, interrupt, program, socket, Error, Message};

/// If not a single service replies within this time, give up (ms).
const GLOBAL_TIMEOUT: u64 = 2500;

/// The client class of `flclient2.c`: one DEALER, how many servers it is
/// connected to, and the sequence number of the last request.
struct Flclient {
    socket: zmq::Socket,
    servers: usize,
    sequence: u64,
    malformed: Sparse,
    /// Sequence numbers as 4-byte big-endian integers (the C++ dialect).
    binary_sequence: bool,
}

impl Flclient {
    fn new(context: &zmq::Context, binary_sequence: bool) -> Result<Flclient, Error> {
        Ok(Flclient {
            socket: socket::new(context, zmq::DEALER).linger(0).build()?,
            servers: 0,
            sequence: 0,
            malformed: Sparse::default(),
            binary_sequence,
        })
    }

    /// Connects to one more server endpoint.
    fn connect(&mut self, endpoint: &str) -> Result<(), Error> {
        self.socket
            .connect(endpoint)
            .map_err(|source| Error::Endpoint {
                action: "connect to",
                endpoint: endpoint.to_string(),
                source,
            })?;
        self.servers += 1;
        Ok(())
    }

    /// Sends `request` to all connected servers in parallel, then waits for
    /// one matching reply and returns its body; `Ok(None)` if none came in
    /// time. Other replies (late ones to earlier requests) are dropped.
    fn request(&mut self, mut request: Message) -> Result<Option<Message>, Error> {
        // Prefix the request with a sequence number and an empty envelope.
        self.sequence += 1;
        let sequence = if self.binary_sequence {
            (self.sequence as u32).to_be_bytes().to_vec()
        } else {
            self.sequence.to_string().into_bytes()
        };
        request.push(sequence.clone());
        request.push("");

        // Blast the request to all connected servers.
        for _ in 0..self.servers {
            if !request.clone().send_or_drop(&self.socket)? {
                log::debug!(
                    "a server's queue is full; its copy of request {} dropped",
                    self.sequence
                );
            }
        }
        // Wait for a matching reply to arrive from anywhere.
        let deadline = Instant::now() + Duration::from_millis(GLOBAL_TIMEOUT);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let Some(mut reply) = Message::recv_timeout(&self.socket, interrupt::millis(left))?
            else {
                return Ok(None);
            };
            // The reply is [empty][sequence][OK].
            if reply.len() != 3 || reply.first() != Some(b"") {
                if let Some(n) = self.malformed.note() {
                    log::warn!("malformed reply ({n} so far) dropped: {}", reply.summary());
                }
                continue;
            }
            reply.pop();
            if reply.pop().as_deref() == Some(sequence.as_slice()) {
                return Ok(Some(reply));
            }
        }
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let binary_sequence = args.get(1).is_some_and(|a| a == "--cpp");
    if binary_sequence {
        args.remove(1);
    }
    if args.len() == 1 {
        println!("I: syntax: {} <endpoint> ...", args[0]);
        return ExitCode::SUCCESS;
    }
    let mut served = false;
    let code = program::run(|| {
        let context = zmq::Context::new();
        // Create a new freelance client object, connected to each endpoint.
        let mut client = Flclient::new(&context, binary_sequence)?;
        for endpoint in &args[1..] {
            client.connect(endpoint)?;
        }
        // Send a bunch of name resolution 'requests', measure time.
        let requests = helpers::env_count("ZGUIDE_REQUESTS", 10_000);
        served = flcliapi::resolve_names(requests, |request| client.request(request))?;
        Ok(())
    });
    // Ctrl-C is a clean exit; a name service that did not answer is not.
    if served || interrupt::interrupted() {
        code
    } else {
        ExitCode::FAILURE
    }
}
