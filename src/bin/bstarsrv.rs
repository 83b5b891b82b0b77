//! §31 Binary Star Implementation (`bstarsrv.c`): the proof-of-concept
//! Binary Star server, with its state machine driven by a hand-written poll
//! loop.
//!
//! `bstarsrv -p` is the primary: clients on `tcp://*:5001` (ROUTER), our
//! state published on `tcp://*:5003`, the backup's read from
//! `tcp://localhost:5004`. `bstarsrv -b` is the backup: `tcp://*:5002`,
//! publishing on `tcp://*:5004`, reading `tcp://localhost:5003`. Any other
//! arguments print `Usage: bstarsrv { -p | -b }` and exit 0. Accepted client
//! requests are echoed back; rejected ones are read and dropped unanswered,
//! so the client times out and fails over. Run beside it: the other server
//! and `bstarcli`; kill the active one and watch the client fail over.
//!
//! The state machine is [`zguide::bstar::Fsm`], shared with `bstarsrv2`.
//!
//! Differs from the C, on purpose:
//! * the failback fix of `bstar.c` applies here too: the C proof of concept
//!   served client requests while still PRIMARY, so a primary restarted
//!   while the backup was active became a second active (split brain). Here
//!   a primary serves only once it is ACTIVE, which needs its backup to say
//!   it is waiting, or a client vote after two silent heartbeats.
//! * a malformed state message is logged and ignored (the C `atoi`s it and
//!   counts it as a sign of life); dual actives/passives exit with code 1.
//! * replies are sent without blocking: a client that stops reading loses
//!   its replies rather than stalling the server (ROUTER drops them anyway).
//! * Ctrl-C/SIGTERM prints `W: interrupted` and exits 0.

use std::process::ExitCode;
use std::time::Instant;

use zguide::bstar::{Event, Fsm, Role, State, HEARTBEAT};
use zguide::log_limit::complain;
use zguide::{interrupt, program, socket, Error, Message};

fn main() -> ExitCode {
    // Arguments can be either of:
    //     -p  primary server, at tcp://localhost:5001
    //     -b  backup server, at tcp://localhost:5002
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (role, frontend_at, statepub_at, statesub_at) = match args.as_slice() {
        [flag] if flag == "-p" => {
            println!("I: Primary active, waiting for backup (passive)");
            (
                Role::Primary,
                "tcp://*:5001",
                "tcp://*:5003",
                "tcp://localhost:5004",
            )
        }
        [flag] if flag == "-b" => {
            println!("I: Backup passive, waiting for primary (active)");
            (
                Role::Backup,
                "tcp://*:5002",
                "tcp://*:5004",
                "tcp://localhost:5003",
            )
        }
        _ => {
            println!("Usage: bstarsrv {{ -p | -b }}");
            return ExitCode::SUCCESS;
        }
    };
    program::run(|| {
        let context = zmq::Context::new();
        let statepub = socket::new(&context, zmq::PUB)
            .linger(0)
            .bind(statepub_at)?;
        let statesub = socket::new(&context, zmq::SUB)
            .linger(0)
            .max_message_size(256) // a state is one digit; the ZMTP handshake needs more
            .subscribe("")
            .connect(statesub_at)?;
        let frontend = socket::new(&context, zmq::ROUTER)
            .linger(0)
            .bind(frontend_at)?;
        let mut fsm = Fsm::new(role, Instant::now());

        // We process events on our two input sockets one at a time through
        // the state machine. Our "work" for a client request is to echo it.
        let mut send_state_at = Instant::now() + HEARTBEAT;
        let result = (|| -> Result<(), Error> {
            loop {
                let time_left = send_state_at.saturating_duration_since(Instant::now());
                let ready = interrupt::poll(&[&frontend, &statesub], interrupt::millis(time_left))?;
                if ready[0] {
                    // Have a client request.
                    if let Some(msg) = Message::try_recv(&frontend)? {
                        if run_fsm(&mut fsm, Event::ClientRequest)? {
                            msg.send_or_drop(&frontend)?;
                        }
                    }
                }
                if ready[1] {
                    // Have state from our peer, execute as event.
                    if let Some(msg) = Message::try_recv(&statesub)? {
                        match (msg.len(), msg.first().and_then(State::parse)) {
                            (1, Some(peer)) => {
                                run_fsm(&mut fsm, Event::Peer(peer))?;
                            }
                            _ => complain(format_args!(
                                "ignored a bad state message: {}",
                                msg.summary()
                            )),
                        }
                    }
                }
                // If we timed out, send our state to the peer.
                if Instant::now() >= send_state_at {
                    Message::from_frames([fsm.state().message()]).send_or_drop(&statepub)?;
                    send_state_at = Instant::now() + HEARTBEAT;
                }
            }
        })();
        if let Err(Error::Interrupted) = result {
            println!("W: interrupted");
        }
        result
    })
}

/// Applies one event; prints the state change in `bstarsrv.c`'s words.
/// Returns whether a client request may be served; a fatal condition prints
/// the C's line and ends the program with an error.
fn run_fsm(fsm: &mut Fsm, event: Event) -> Result<bool, Error> {
    match fsm.handle(event, Instant::now()) {
        Ok(outcome) => {
            if let Some(change) = outcome.change {
                println!("{}", change.log_line(false));
            }
            Ok(outcome.accept)
        }
        Err(fatal) => {
            println!("{}", fatal.log_line());
            Err(Error::Protocol(format!("{fatal:?}")))
        }
    }
}
